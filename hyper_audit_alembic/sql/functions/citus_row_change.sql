-- How a tracked table's changes are recorded when audit.record_version is a Citus
-- distributed table (op.distribute_audit()): one audit row per changed row, written per
-- statement for INSERT and DELETE (triggers audit_citus_insert, audit_citus_delete) and
-- per row for UPDATE (audit_citus_update), so that an UPDATE's old and new row come as a
-- pair and a key change needs no pairing by key (the single-node path pairs them through
-- audit.key_change_state, a table on the coordinator that the workers cannot reach).
--
-- Why not record_row_change.sql (the single-node write path): Citus cannot plan an
-- INSERT ... SELECT from a statement's transition tables into a distributed table
-- ("executor could not find named tuplestore"; here the statement's rows are read into an
-- array first, and Citus plans the INSERT from unnest() of it), and a distributed table's
-- triggers fire on
-- its shards, on the workers, where tg_relid and tg_table_name are the shard's
-- (acc_102008), not the table's. So the table's identity is fixed when it is tracked:
-- the trigger arguments are the table's oid on the coordinator, its schema and its name
-- (audit.enable_tracking_keys puts them first), then the key columns and options exactly
-- as record_row_change takes them (an empty separator argument, 'exclude=<column>',
-- 'skip_unchanged'). The audit rows are then the single-node ones: the coordinator's oid,
-- schema and name, and record ids from audit.to_record_id of that oid (bit for bit). A
-- key-changing UPDATE is one UPDATE row with the new and the old record id, as the
-- single-node row-level path writes it.
--
-- citus.allow_nested_distributed_execution: on a shard, the INSERT into the distributed
-- audit table is itself a distributed statement, which Citus refuses inside a statement on
-- a shard unless allowed (its worry, a function reading distributed tables while pushed
-- down, does not apply to an append-only write). Set around the INSERT and put back, where
-- Citus defines it (not as a SET clause of the function: PostgreSQL 15 lets only a
-- superuser create a function that sets a parameter no loaded library defines).
--
-- Nothing of the writer's session changes what is recorded: names resolve in pg_catalog
-- (pg_temp last) and values are rendered under the canonical output settings of
-- record_row_change.sql. The arguments are catalog facts written by enable_tracking_keys
-- (the audit owner), never text another role wrote.
create or replace function audit.citus_row_change()
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
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
    table_oid oid := tg_argv[0]::oid;
    sep integer := array_position(tg_argv, '');
    keys text[] := tg_argv[3:coalesce(sep - 1, tg_nargs - 1)];
    options text[] := case when sep is null then '{}' else tg_argv[sep + 1:tg_nargs - 1] end;
    excluded text[] := array(
        select substr(o.opt, 9) from unnest(options) as o (opt) where left(o.opt, 8) = 'exclude='
    );
    nested text := current_setting('citus.allow_nested_distributed_execution', true);
    records jsonb[];
begin
    if tg_level = 'STATEMENT' then
        if tg_op = 'INSERT' then
            records := array(
                select to_jsonb(r) operator(pg_catalog.-) excluded from audit_new as r
            );
        elsif tg_op = 'DELETE' then
            records := array(
                select to_jsonb(r) operator(pg_catalog.-) excluded from audit_old as r
            );
        else
            raise exception using
                errcode = 'triggered_action_exception',
                message = 'audit.citus_row_change: fires for each statement on INSERT and DELETE'
                    || ' only, for each row on UPDATE';
        end if;
        if cardinality(records) = 0 then
            return null;
        end if;
        if nested is not null then
            perform set_config('citus.allow_nested_distributed_execution', 'on', true);
        end if;
        if cardinality(records) = 1 then
            -- One row (the common single-row statement): an INSERT ... VALUES, which Citus
            -- routes straight to the audit shard (INSERT ... SELECT goes through COPY).
            new_rec := case when tg_op = 'INSERT' then records[1] end;
            old_rec := case when tg_op = 'DELETE' then records[1] end;
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            values (
                audit.to_record_id(table_oid, keys, new_rec),
                audit.to_record_id(table_oid, keys, old_rec),
                tg_op::audit.operation,
                table_oid,
                tg_argv[1],
                tg_argv[2],
                new_rec,
                old_rec
            );
        else
            insert into audit.record_version (
                record_id, old_record_id, op, table_oid, table_schema, table_name,
                record, old_record
            )
            select
                case when tg_op = 'INSERT' then audit.to_record_id(table_oid, keys, n.rec) end,
                case when tg_op = 'DELETE' then audit.to_record_id(table_oid, keys, n.rec) end,
                tg_op::audit.operation,
                table_oid,
                tg_argv[1],
                tg_argv[2],
                case when tg_op = 'INSERT' then n.rec end,
                case when tg_op = 'DELETE' then n.rec end
            from unnest(records) as n (rec);
        end if;
        if nested is not null then
            perform set_config('citus.allow_nested_distributed_execution', nested, true);
        end if;
        return null;
    end if;
    if tg_op <> 'DELETE' then
        new_rec := to_jsonb(new) operator(pg_catalog.-) excluded;
    end if;
    if tg_op <> 'INSERT' then
        old_rec := to_jsonb(old) operator(pg_catalog.-) excluded;
    end if;
    if tg_op = 'UPDATE' and 'skip_unchanged' = any (options)
        and new_rec operator(pg_catalog.=) old_rec
    then
        return null;
    end if;
    if nested is not null then
        perform set_config('citus.allow_nested_distributed_execution', 'on', true);
    end if;
    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(table_oid, keys, new_rec),
        audit.to_record_id(table_oid, keys, old_rec),
        tg_op::audit.operation,
        table_oid,
        tg_argv[1],
        tg_argv[2],
        new_rec,
        old_rec
    );
    if nested is not null then
        perform set_config('citus.allow_nested_distributed_execution', nested, true);
    end if;
    return null;
end
$$;

revoke all on function audit.citus_row_change() from public;
