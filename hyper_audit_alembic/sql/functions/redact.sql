-- Erases a record's values from the audit trail, lawfully and visibly: the given columns'
-- values (or, with columns null, the whole row image: '{}') go from every version of the
-- record of `target` whose primary key is `key` ({"id": 7}, the key columns' values as the
-- audit records hold them). The record's REDACT audit row says who (the actor, as for any
-- audit row), why (reason) and which columns, in its context:
--   {"redaction": {"columns": [...] or null, "reason": ..., "link": n, "rows": n}}
-- merged into the application's context (hyper_audit.context), which must be a JSON object.
-- A 'redaction' link of the seal chain records which sealed segments changed, from which
-- hash to which, so audit.verify() reports them as redacted while any other change of a
-- sealed row still fails. Each changed segment is rehashed under a new salt and its old
-- salt deleted: no digest kept for verification can be recomputed from a guessed value.
--
-- Which versions: every audit row recorded under the key's record id (a key used again
-- after a DELETE is the same key: every record that held it), and each such record's rows
-- under its other keys, followed through changes of its primary key both ways (an UPDATE
-- whose record_id differs from its old_record_id). Another record that held one of those
-- other keys at another time is left alone. Also the rows recorded under the table's
-- older oids (a pg_dump and restore re-creates the table), found as history() finds them.
-- (A swap of two keys by one statement, under a deferrable key, is not told apart.)
--
-- Which keys: a column's values under every name it had (audit.column_change, caught up
-- first for a tracked table whose renames were not seen yet), each audit row by the name
-- the column had when the row was written: a later column that took an old name keeps its
-- values. A column dropped since is named as it was when dropped.
--
-- Only roles granted it may call it (grant usage on schema audit, and execute on function
-- audit.redact(regclass, jsonb, text[], text) to <role>): nobody can by default. A sealed
-- segment holding the record that fails verification stops it before anything changes.
-- The erased values stay in dead row versions, and their bytes in the pages' free space
-- after a plain VACUUM, until VACUUM FULL (docs/compliance.md). Run it in a READ COMMITTED
-- transaction (the default): it refuses an older snapshot.
create or replace function audit.redact(
    target regclass, key jsonb, columns text[] default null, reason text default null
)
returns table (redaction_link bigint, rows_redacted bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set quote_all_identifiers = off
set jit = off
as $$
declare
    link bigint;
    shown text;
    key_columns text[];
    record_key uuid;
    record_ids uuid[];
    version_ids bigint[];
    changed_ids bigint[];
    erased smallint[];
    missing text;
    changed bigint;
    audit_row bigint;
    segment record;
    state record;
    new_salt bytea;
    changes jsonb := '[]';
    context_text text;
    app_context jsonb;
    rel_schema name;
    rel_name name;
    oids oid[];
    old_oids oid[];
    shared_oids oid[];
    first_names text[];
begin
    select pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), n.nspname, c.relname
    into shown, rel_schema, rel_name
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target;
    if reason is null or pg_catalog.btrim(reason) = '' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): say why (reason => ''...''): the REDACT '
                || 'audit row records it';
    end if;
    -- Each statement below reads the rows as committed when it starts (READ COMMITTED),
    -- after the chain's lock: with an older snapshot, rows of the record committed since
    -- would keep their values, and the chain's last link would be read stale.
    if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
        raise exception using
            errcode = 'invalid_transaction_state',
            message = 'audit.redact(' || shown || '): run it in a READ COMMITTED transaction, '
                || 'not ' || pg_catalog.current_setting('transaction_isolation') || ': rows '
                || 'committed after this transaction''s snapshot would keep their values';
    end if;
    -- The application's context, merged into the REDACT row's: read (as text, never run)
    -- before anything changes, so that a setting that is no JSON object stops the call
    -- with a clear error instead of dropping it or failing at the end.
    context_text := nullif(pg_catalog.current_setting('hyper_audit.context', true), '');
    if context_text is not null then
        begin
            app_context := context_text::jsonb;
        exception when invalid_text_representation then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): the setting hyper_audit.context is '
                    || 'not JSON; set it to a JSON object or leave it empty';
        end;
        if pg_catalog.jsonb_typeof(app_context) = 'null' then
            app_context := null;
        elsif pg_catalog.jsonb_typeof(app_context) <> 'object' then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): the setting hyper_audit.context is a '
                    || 'JSON ' || pg_catalog.jsonb_typeof(app_context) || ', not an object: the '
                    || 'REDACT audit row''s context is that object with its "redaction" added';
        end if;
    end if;
    key_columns := audit.primary_key_columns(target);
    if pg_catalog.cardinality(key_columns) = 0 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the table has no primary key, so its '
                || 'audit rows have no record ids to find a record by';
    end if;
    if key is null or pg_catalog.jsonb_typeof(key) <> 'object'
        or not key operator(pg_catalog.?&) key_columns
        or exists (select from pg_catalog.unnest(key_columns) k where key -> k = 'null'::jsonb)
    then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.redact(' || shown || '): the key is the primary-key columns ('
                || pg_catalog.array_to_string(key_columns, ', ') || ') as a JSON object, such as '
                || (select pg_catalog.jsonb_object_agg(k, 'value') from pg_catalog.unnest(key_columns) k)::text
                || ', not ' || coalesce(key::text, 'null');
    end if;

    -- Renames and drops made while the event trigger was not there are recorded now (as
    -- enable_tracking would): the audit rows written before them use the older names.
    if exists (select from audit.tracked_column t where t.table_oid = target) then
        perform audit.record_column_changes(target);
    end if;
    if columns is not null then
        if pg_catalog.cardinality(columns) = 0 or pg_catalog.array_position(columns, null) is not null then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = 'audit.redact(' || shown || '): columns is a list of column names, '
                    || 'or null for the whole row';
        end if;
        -- A name is a column of the table, or else a column dropped under that name.
        select c into missing from pg_catalog.unnest(columns) c
        where not exists (
            select from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped and a.attname = c
        ) and not exists (
            select from audit.column_change h
            where h.table_oid = target and h.kind = 'drop' and h.old_name = c
        )
        limit 1;
        if missing is not null then
            raise exception using
                errcode = 'undefined_column',
                message = 'audit.redact(' || shown || '): the table has no column '
                    || pg_catalog.quote_ident(missing) || ' (columns are named as in the table)';
        end if;
        erased := array(
            select a.attnum from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped
                and a.attname = any (columns)
            union
            select h.attnum from audit.column_change h
            where h.table_oid = target and h.kind = 'drop' and h.old_name = any (columns)
                and not exists (
                    select from pg_catalog.pg_attribute a
                    where a.attrelid = target and a.attnum > 0 and not a.attisdropped
                        and a.attname = h.old_name
                )
        );
        -- Each erased column's name when the table's history (under this oid) begins: the
        -- name its rows have under the table's older oids.
        first_names := array(
            select coalesce(
                (select h.old_name::text from audit.column_change h
                 where h.table_oid = target and h.attnum = x
                 order by h.before_id, h.id limit 1),
                (select a.attname::text from pg_catalog.pg_attribute a
                 where a.attrelid = target and a.attnum = x))
            from pg_catalog.unnest(erased) x
        );
    end if;

    link := audit.lock_seal_chain();

    -- The oids the table's history is under: a pg_dump and restore (or any re-creation of
    -- the table) gives it a new oid, and its older rows keep the old one. As history() finds
    -- them: each oid of the audit table (one index probe per oid) whose first or last audit
    -- row names the table as it is named now; an old oid that is now another relation's
    -- counts only with its rows recorded under this table's name. The table's own rows
    -- recorded under the name of another relation that exists now are that relation's
    -- (an older table that had the same oid).
    with recursive found (table_oid) as (
        select min(r.table_oid) from audit.record_version r
        union all
        select (select min(r.table_oid) from audit.record_version r where r.table_oid > f.table_oid)
        from found f
        where f.table_oid is not null
    ),
    named as (
        select f.table_oid,
            exists (select from pg_catalog.pg_class c where c.oid = f.table_oid) as taken
        from found f
        cross join lateral (
            select r.table_schema, r.table_name from audit.record_version r
            where r.table_oid >= f.table_oid and r.table_oid <= f.table_oid
            order by r.table_oid limit 1
        ) first_row
        cross join lateral (
            select r.table_schema, r.table_name from audit.record_version r
            where r.table_oid >= f.table_oid and r.table_oid <= f.table_oid
            order by r.table_oid desc limit 1
        ) last_row
        where f.table_oid is not null and f.table_oid <> target
            and ((first_row.table_schema = rel_schema and first_row.table_name = rel_name)
                or (last_row.table_schema = rel_schema and last_row.table_name = rel_name))
    )
    select
        array(select x.table_oid from named x where not x.taken order by x.table_oid),
        array(select x.table_oid from named x where x.taken order by x.table_oid)
    into old_oids, shared_oids;
    oids := array[target::oid] || old_oids || shared_oids;

    -- The record's versions. Every audit row under the key's record id (every record that
    -- held the key), then each record followed through its key changes, in audit id order
    -- (one row's changes are serialised by its lock, so ids give their order): from a row
    -- where it left the key (an UPDATE to another key), the rows of the new key after it, up
    -- to and including the row where it left that one (or its DELETE), and before the next
    -- INSERT of that key; from a row where it arrived from another key, the rows of the old
    -- key before it, back to the row where it arrived there (its INSERT or an UPDATE from a
    -- third key) and after the last row where another record left it. A record that held
    -- one of those keys at another time is not touched. Each task: a record id and the
    -- audit ids (lo, hi), both excluded, of its rows taken.
    record_key := audit.to_record_id(target, key_columns, key);
    with recursive task (rid, lo, hi) as (
        select audit.to_record_id(o, key_columns, key), 0::bigint, 9223372036854775807::bigint
        from pg_catalog.unnest(oids) o
        union
        select n.rid, b.lo, b.hi
        from task t
        join audit.record_version v
            on v.table_oid = any (oids) and (v.record_id = t.rid or v.old_record_id = t.rid)
            and v.id > t.lo and v.id < t.hi
            and (v.table_oid = any (old_oids)
                or (v.table_schema = rel_schema and v.table_name = rel_name)
                or (v.table_oid = target and not exists (
                    select from pg_catalog.pg_class c
                    join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
                    where ns.nspname = v.table_schema and c.relname = v.table_name)))
        cross join lateral (
            select v.record_id as rid, 1 as direction
            where v.op::text = 'UPDATE' and v.old_record_id = t.rid and v.record_id <> t.rid
            union all
            select v.old_record_id, -1
            where v.op::text = 'UPDATE' and v.record_id = t.rid and v.old_record_id <> t.rid
        ) n
        cross join lateral (
            select
                case when n.direction > 0 then v.id else greatest(
                    (select max(w.id) - 1 from audit.record_version w
                     where w.table_oid = any (oids) and w.record_id = n.rid and w.id < v.id
                        and w.op::text in ('INSERT', 'UPDATE') and w.old_record_id is distinct from n.rid),
                    (select max(w.id) from audit.record_version w
                     where w.table_oid = any (oids) and w.old_record_id = n.rid and w.id < v.id
                        and w.op::text in ('UPDATE', 'DELETE') and w.record_id is distinct from n.rid),
                    0)
                end as lo,
                case when n.direction < 0 then v.id else least(
                    (select min(w.id) + 1 from audit.record_version w
                     where w.table_oid = any (oids) and w.old_record_id = n.rid and w.id > v.id
                        and w.op::text in ('UPDATE', 'DELETE') and w.record_id is distinct from n.rid),
                    (select min(w.id) from audit.record_version w
                     where w.table_oid = any (oids) and w.record_id = n.rid and w.id > v.id
                        and w.op::text in ('INSERT', 'UPDATE') and w.old_record_id is distinct from n.rid),
                    9223372036854775807)
                end as hi
        ) b
    ),
    versions as (
        select distinct v.id
        from task t
        join audit.record_version v
            on v.table_oid = any (oids) and (v.record_id = t.rid or v.old_record_id = t.rid)
            and v.id > t.lo and v.id < t.hi
            and (v.table_oid = any (old_oids)
                or (v.table_schema = rel_schema and v.table_name = rel_name)
                or (v.table_oid = target and not exists (
                    select from pg_catalog.pg_class c
                    join pg_catalog.pg_namespace ns on ns.oid = c.relnamespace
                    where ns.nspname = v.table_schema and c.relname = v.table_name)))
        where v.op::text <> 'REDACT'
    )
    select array(select distinct t.rid from task t order by t.rid),
        array(select x.id from versions x order by x.id)
    into record_ids, version_ids;
    if pg_catalog.cardinality(version_ids) = 0 then
        raise exception using
            errcode = 'no_data_found',
            message = 'audit.redact(' || shown || '): no audit row has the record of key '
                || key::text || '; nothing was redacted';
    end if;

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
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (version_ids)
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
    end loop;

    -- The names each erased column had when each row was written: spans of audit ids
    -- (after_id, upto] per column and name (audit.column_change: rows up to before_id use
    -- old_name). A key of a row is the column whose span of that name holds the row; of
    -- two (a column dropped or renamed, then another one taking its name), the one whose
    -- span ends first: the older column's. A key no span holds was written after a change
    -- seen late (without the event trigger a change is dated when enable_tracking or
    -- redact sees it): it is the column that had the name next. Under an older oid (before
    -- a dump and restore) the columns are those last seen there (audit.tracked_column), and
    -- an erased column is the one with the name it had when this oid's history began (any
    -- key of that name, where nothing was seen).
    with spans as materialized (
        select x.rel, x.attnum, x.name, x.after_id, x.upto,
            case when x.rel = target then x.attnum = any (erased) else exists (
                -- a column of an older oid: erased if it had, when last seen, the name an
                -- erased column has at the start of this oid's history
                select from audit.tracked_column t
                where t.table_oid = x.rel and t.attnum = x.attnum and t.name = any (first_names)
            ) or exists (
                select from audit.column_change h
                where h.table_oid = x.rel and h.attnum = x.attnum and h.kind = 'drop'
                    and h.old_name = any (first_names)
            ) end as gone
        from (
            select h.table_oid as rel, h.attnum, h.old_name::text as name,
                pg_catalog.lag(h.before_id) over (
                    partition by h.table_oid, h.attnum order by h.before_id, h.id) as after_id,
                h.before_id as upto
            from audit.column_change h
            where h.table_oid = any (oids)
            union all
            select target, a.attnum, a.attname::text,
                (select max(h.before_id) from audit.column_change h
                 where h.table_oid = target and h.attnum = a.attnum),
                null
            from pg_catalog.pg_attribute a
            where a.attrelid = target and a.attnum > 0 and not a.attisdropped
            union all
            select t.table_oid, t.attnum, t.name::text,
                (select max(h.before_id) from audit.column_change h
                 where h.table_oid = t.table_oid and h.attnum = t.attnum),
                null
            from audit.tracked_column t
            where t.table_oid = any (old_oids || shared_oids)
        ) x
    ),
    erased_images as (
        select v.id, v.ts,
            case
                when v.record is null then null
                when erased is null then '{}'::jsonb
                else v.record operator(pg_catalog.-) array(
                    select e.key from pg_catalog.jsonb_object_keys(v.record) e (key)
                    where coalesce((
                        select sp.gone from spans sp
                        where sp.rel = v.table_oid and sp.name = e.key
                            and (sp.upto is null or v.id <= sp.upto)
                        order by sp.after_id is not null and v.id <= sp.after_id,
                            sp.upto nulls last, sp.after_id
                        limit 1
                    ), v.table_oid <> target and e.key = any (first_names)))
            end as record,
            case
                when v.old_record is null then null
                when erased is null then '{}'::jsonb
                else v.old_record operator(pg_catalog.-) array(
                    select e.key from pg_catalog.jsonb_object_keys(v.old_record) e (key)
                    where coalesce((
                        select sp.gone from spans sp
                        where sp.rel = v.table_oid and sp.name = e.key
                            and (sp.upto is null or v.id <= sp.upto)
                        order by sp.after_id is not null and v.id <= sp.after_id,
                            sp.upto nulls last, sp.after_id
                        limit 1
                    ), v.table_oid <> target and e.key = any (first_names)))
            end as old_record
        from audit.record_version v
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (version_ids)
    ),
    done as (
        update audit.record_version v set record = x.record, old_record = x.old_record
        from erased_images x
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = x.id and v.ts = x.ts
            and (v.record is distinct from x.record or v.old_record is distinct from x.old_record)
        returning v.id
    )
    select array(select d.id from done d order by d.id) into changed_ids;
    changed := pg_catalog.cardinality(changed_ids);

    -- Rehash each segment whose rows changed under a new salt; the old salt goes.
    for segment in
        select distinct s.segment_id,
            coalesce((
                select e.value ->> 'new_hash'
                from audit.seal_log r, pg_catalog.jsonb_array_elements(r.body -> 'segments') e
                where r.kind = 'redaction' and e.value ->> 'segment' = s.segment_id::text
                order by r.link_id desc limit 1
            ), pg_catalog.encode(s.hash, 'hex')) as old_hash
        from audit.record_version v
        join audit.seal_segment s on s.first_ts <= v.ts and s.last_ts >= v.ts
        join pg_catalog.unnest(s.ids) g on g @> v.id
        where v.table_oid = any (oids)
            and (v.record_id = any (record_ids) or v.old_record_id = any (record_ids))
            and v.id = any (changed_ids)
        order by s.segment_id
    loop
        new_salt := pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
            || pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
        select * into state from audit.segment_state(segment.segment_id, new_salt);
        update audit.seal_salt st set salt = new_salt where st.segment_id = segment.segment_id;
        changes := changes || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
            'segment', segment.segment_id,
            'old_hash', segment.old_hash,
            'new_hash', pg_catalog.encode(state.hash, 'hex')));
    end loop;

    insert into audit.record_version (record_id, op, table_oid, table_schema, table_name, context)
    select record_key, 'REDACT'::audit.operation, target, n.nspname, c.relname,
        coalesce(app_context, '{}'::jsonb)
        operator(pg_catalog.||) pg_catalog.jsonb_build_object('redaction', pg_catalog.jsonb_build_object(
            'columns', pg_catalog.to_jsonb(columns), 'reason', reason, 'link', link, 'rows', changed))
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = target
    returning id into audit_row;

    perform audit.append_seal_link(link, 'redaction', pg_catalog.jsonb_build_object(
        'table', shown,
        'record_ids', (select pg_catalog.jsonb_agg(x::text order by x::text) from pg_catalog.unnest(record_ids) x),
        'columns', pg_catalog.to_jsonb(columns),
        'reason', reason,
        'rows', changed,
        'audit_row', audit_row,
        'segments', changes
    ));
    return query select link, changed;
end
$$;

revoke all on function audit.redact(regclass, jsonb, text[], text) from public;
