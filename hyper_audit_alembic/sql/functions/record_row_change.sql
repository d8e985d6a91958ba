-- How a tracked table's changes are recorded. The primary-key column names are the
-- trigger arguments (resolved once by enable_tracking), so nothing is looked up per row.
--
-- Statement level (the normal case): audit_insert, audit_update and audit_delete run once
-- per statement and write the audit rows of all its rows with one INSERT ... SELECT from
-- the statement's transition tables. An UPDATE pairs each old row with its new row by
-- the primary key, which is only right for rows whose key did not change; rows whose key
-- changed are written by the row trigger audit_key_change (record_key_change below) as
-- they happen, and the statement trigger leaves them out.
--
-- Row level (tg_level = 'ROW', trigger audit_row_change): one audit row per changed row,
-- for tables where transition tables cannot pair rows by key (see enable_tracking): a
-- deferrable primary key, a foreign key whose action updates the table's rows, or an
-- inheritance hierarchy. Triggers of earlier versions (row level) land here too.
--
-- Both write the same audit rows as the reference per-row design. The settings keep plans
-- cached for one size of transition table good for every size: a hash join (a nested loop
-- planned for one row would pair 100,000 rows in quadratic time; a merge join sorts both
-- sides), no JIT (compiled for a large statement, then paid again by every small one).
--
-- A table with options (exclude, skip_unchanged: see enable_tracking.sql) takes the
-- options path at the top; every other table the path below it.
--
-- Nothing of the writer's session changes what is recorded: names resolve in pg_catalog
-- (pg_temp last), keys pair by their bytes (collate "C"), and values are rendered under
-- canonical output settings, whatever the writer set: floats with their shortest exact
-- text (extra_float_digits = 1), bytea as hex, timestamptz in UTC, dates and ranges of
-- them in ISO form, intervals in the postgres style, money in the C locale. These are
-- PostgreSQL's defaults but for TimeZone and lc_monetary, so under default settings the
-- values and record ids are the reference design's.

create or replace function audit.record_row_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
set enable_nestloop = off
set enable_mergejoin = off
set jit = off
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
    first_key_change bigint;
    written bigint;
    sep integer;
    keys text[];
    excluded text[];
    skip_unchanged boolean;
begin
    -- Options (version 2): the trigger arguments after the key columns and an empty
    -- separator argument. Without them (the usual case) the path below is version 1's.
    sep := array_position(tg_argv, '');
    if sep is not null then
        keys := tg_argv[0:sep-1];
        excluded := array(
            select substr(a.arg, 9) from unnest(tg_argv[sep+1:tg_nargs]) as a (arg)
            where left(a.arg, 8) = 'exclude='
        );
        skip_unchanged := 'skip_unchanged' = any (tg_argv[sep+1:tg_nargs]);
        if tg_level = 'ROW' then
            if tg_op <> 'DELETE' then
                new_rec := to_jsonb(new) - excluded;
            end if;
            if tg_op <> 'INSERT' then
                old_rec := to_jsonb(old) - excluded;
            end if;
            if skip_unchanged and tg_op = 'UPDATE' and new_rec = old_rec then
                return null;
            end if;
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            values (
                audit.to_record_id(tg_relid, keys, new_rec),
                audit.to_record_id(tg_relid, keys, old_rec),
                tg_op::audit.operation,
                tg_relid,
                tg_table_schema,
                tg_table_name,
                new_rec,
                old_rec
            );
            return null;
        end if;
        if tg_op = 'INSERT' then
            insert into audit.record_version (
                record_id, op, table_oid, table_schema, table_name, record
            )
            select
                audit.to_record_id(tg_relid, keys, n.rec),
                'INSERT', tg_relid, tg_table_schema, tg_table_name, n.rec
            from (select to_jsonb(r) - excluded as rec from audit_new as r offset 0) as n;
        elsif tg_op = 'DELETE' then
            insert into audit.record_version (
                old_record_id, op, table_oid, table_schema, table_name, old_record
            )
            select
                audit.to_record_id(tg_relid, keys, o.rec),
                'DELETE', tg_relid, tg_table_schema, tg_table_name, o.rec
            from (select to_jsonb(r) - excluded as rec from audit_old as r offset 0) as o;
        else
            -- Pairs old and new rows by key like the several-rows path below, with the
            -- excluded columns left out and, with skip_unchanged, the pairs whose recorded
            -- values are equal left out.
            -- The id of the first audit row audit_key_change wrote for this statement,
            -- taken from audit.key_change_state (see the several-rows path below).
            select k.first_id into first_key_change from audit.key_change_state as k
            where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                and k.depth = pg_trigger_depth();
            if first_key_change is not null then
                update audit.key_change_state as k set first_id = null
                where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                    and k.depth = pg_trigger_depth();
            end if;
            execute '
                with
                    old_rows as materialized (
                        select s.rec, audit.record_id_text($1, $2, s.rec) as key
                        from (
                            select pg_catalog.to_jsonb(r) operator(pg_catalog.-) $6 as rec
                            from audit_old as r offset 0
                        ) as s
                    ),
                    new_rows as materialized (
                        select s.rec, audit.record_id_text($1, $2, s.rec) as key
                        from (
                            select pg_catalog.to_jsonb(r) operator(pg_catalog.-) $6 as rec
                            from audit_new as r offset 0
                        ) as s
                    ),
                    key_changes as materialized (
                        select v.old_record, v.record
                        from audit.record_version as v
                        where $5 is not null
                            and v.id >= $5
                            and v.ts >= pg_catalog.now()
                            and v.table_oid = $1
                            and v.op = ''UPDATE''
                            and v.old_record in (select rec from old_rows)
                            and v.record in (select rec from new_rows)
                    )
                insert into audit.record_version (
                    record_id, old_record_id, op, table_oid, table_schema, table_name,
                    record, old_record
                )
                select p.id, p.id, ''UPDATE'', $1, $3, $4, p.rec, p.old_rec
                from (
                    select
                        audit.uuid_v5(''fd62bc3d-8d6e-43c2-919c-802ba3762271''::uuid, n.key) as id,
                        n.rec,
                        o.rec as old_rec
                    from new_rows as n
                    join old_rows as o on o.key = n.key collate "C"
                    where not exists (select from key_changes as k where k.old_record = o.rec)
                        and not exists (select from key_changes as k where k.record = n.rec)
                        and not ($7 and n.rec operator(pg_catalog.=) o.rec)
                    offset 0
                ) as p'
            using tg_relid, keys, tg_table_schema, tg_table_name, first_key_change, excluded,
                skip_unchanged;
        end if;
        return null;
    end if;

    if tg_level = 'ROW' then
        if tg_op <> 'DELETE' then
            new_rec := to_jsonb(new);
        end if;
        if tg_op <> 'INSERT' then
            old_rec := to_jsonb(old);
        end if;
        insert into audit.record_version (
            record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
        )
        values (
            audit.to_record_id(tg_relid, tg_argv, new_rec),
            audit.to_record_id(tg_relid, tg_argv, old_rec),
            tg_op::audit.operation,
            tg_relid,
            tg_table_schema,
            tg_table_name,
            new_rec,
            old_rec
        );
        return null;
    end if;

    if tg_op = 'INSERT' then
        insert into audit.record_version (
            record_id, op, table_oid, table_schema, table_name, record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, n.rec),
            'INSERT', tg_relid, tg_table_schema, tg_table_name, n.rec
        from (select to_jsonb(r) as rec from audit_new as r offset 0) as n;
    elsif tg_op = 'DELETE' then
        insert into audit.record_version (
            old_record_id, op, table_oid, table_schema, table_name, old_record
        )
        select
            audit.to_record_id(tg_relid, tg_argv, o.rec),
            'DELETE', tg_relid, tg_table_schema, tg_table_name, o.rec
        from (select to_jsonb(r) as rec from audit_old as r offset 0) as o;
    else
        -- The common single-row UPDATE whose key text did not change: its one old and
        -- one new row are the same row, and audit_key_change wrote nothing for it
        -- (record_key_change writes only rows whose key text changed), so no state is read.
        insert into audit.record_version (
            record_id, old_record_id, op, table_oid, table_schema, table_name,
            record, old_record
        )
        select p.id, p.id, 'UPDATE', tg_relid, tg_table_schema, tg_table_name, p.rec, p.old_rec
        from (
            select
                audit.to_record_id(tg_relid, tg_argv, n.rec) as id,
                n.rec,
                o.rec as old_rec,
                audit.record_id_text(tg_relid, tg_argv, n.rec) collate "C"
                    = audit.record_id_text(tg_relid, tg_argv, o.rec) collate "C" as same_key
            from (select to_jsonb(r) as rec from audit_new as r offset 0) as n
            cross join (select to_jsonb(r) as rec from audit_old as r offset 0) as o
            where not exists (select from audit_old offset 1)
            offset 0
        ) as p
        -- Tested after the join (offset 0 above), which stays a plain nested loop over one
        -- row each (as a join condition, the key comparison would build a hash table).
        where p.same_key;
        get diagnostics written = row_count;
        if written = 1 then
            return null;
        end if;
        if not exists (select from audit_old) then
            return null;
        end if;
        -- Key changes or several rows: did audit_key_change write rows for this statement?
        -- It noted the id of its first audit row in audit.key_change_state for this
        -- backend, table and trigger depth (the statement's row and statement triggers run
        -- at the same depth, nested statements deeper; only the audit owner writes there).
        -- Taken and cleared here; null if it wrote none.
        select k.first_id into first_key_change from audit.key_change_state as k
        where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
            and k.depth = pg_trigger_depth();
        if first_key_change is not null then
            update audit.key_change_state as k set first_id = null
            where k.backend_pid = pg_backend_pid() and k.table_oid = tg_relid
                and k.depth = pg_trigger_depth();
        end if;
        if not exists (select from audit_old offset 1) then
            return null;  -- one row whose key changed: audit_key_change wrote it
        end if;
        -- Several rows. Rows whose key changed were written by audit_key_change: they are
        -- the audit rows from first_key_change on whose old and new record are an old and
        -- a new row of this statement, and their old and new rows are left out; every
        -- other old row pairs with the new row of the same key. Planned anew for each
        -- statement (EXECUTE): a plan cached for one number of rows is poor for another.
        execute '
            with
                old_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_old as r offset 0) as s
                ),
                new_rows as materialized (
                    select s.rec, audit.record_id_text($1, $2, s.rec) as key
                    from (select pg_catalog.to_jsonb(r) as rec from audit_new as r offset 0) as s
                ),
                key_changes as materialized (
                    select v.old_record, v.record
                    from audit.record_version as v
                    where $5 is not null
                        and v.id >= $5
                        and v.ts >= pg_catalog.now()
                        and v.table_oid = $1
                        and v.op = ''UPDATE''
                        and v.old_record in (select rec from old_rows)
                        and v.record in (select rec from new_rows)
                )
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select p.id, p.id, ''UPDATE'', $1, $3, $4, p.rec, p.old_rec
            from (
                select
                    audit.uuid_v5(''fd62bc3d-8d6e-43c2-919c-802ba3762271''::uuid, n.key) as id,
                    n.rec,
                    o.rec as old_rec
                from new_rows as n
                join old_rows as o on o.key = n.key collate "C"
                where not exists (select from key_changes as k where k.old_record = o.rec)
                    and not exists (select from key_changes as k where k.record = n.rec)
                offset 0
            ) as p'
        using tg_relid, tg_argv, tg_table_schema, tg_table_name, first_key_change;
    end if;
    return null;
end
$$;

revoke all on function audit.record_row_change() from public;
