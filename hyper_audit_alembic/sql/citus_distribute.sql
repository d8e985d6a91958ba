-- op.distribute_audit(): audit.record_version becomes a Citus distributed table, spread
-- over the workers by table_oid (all audit rows of one table on one shard, so one table's
-- or one record's history with table_oid = ... is a single-shard query), and every
-- tracked table is tracked again, now row by row by audit.citus_row_change (see
-- citus_row_change.sql; audit.enable_tracking_keys picks it where the audit table is
-- distributed). Run on the coordinator, after op.install_audit(). Idempotent: over a
-- distributed audit table it only tracks the tracked tables again (none change).
--
-- A distributed table's primary key must hold the distribution column: the key becomes
-- (table_oid, <the key's columns>) under its name, record_version_pkey. Rows recorded
-- before move to the shards (create_distributed_table copies them), and the coordinator's
-- local copy is emptied. Every audit function is on the workers already: Citus creates
-- the schema, the type and each function on every node when they are created (metadata
-- sync, the default since Citus 11), and on nodes added later.
do $$
declare
    kind text;
    key_columns text[];
    tracked regclass;
begin
    if pg_catalog.to_regprocedure('audit.enable_tracking(regclass)') is null
        or pg_catalog.to_regprocedure('audit.citus_kind(regclass)') is null
    then
        raise exception using
            errcode = 'undefined_function',
            message = 'op.distribute_audit: the audit trail (of this release) is not installed in '
                || 'this database',
            hint = 'Run op.install_audit() first, in this migration or an earlier one.';
    end if;
    if not exists (select from pg_catalog.pg_extension where extname = 'citus') then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'op.distribute_audit: the citus extension is not installed in this database',
            hint = 'Install Citus on every node (shared_preload_libraries = citus, then create '
                || 'extension citus and add the workers), or remove op.distribute_audit().';
    end if;
    if exists (select from pg_catalog.pg_extension where extname = 'timescaledb') then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'op.distribute_audit: the timescaledb extension is installed in this '
                || 'database, and Citus cannot distribute a hypertable',
            hint = 'Keep the audit trail on one node with TimescaleDB, or use Citus without it.';
    end if;
    kind := audit.citus_kind('audit.record_version'::pg_catalog.regclass);
    if kind is distinct from 'distributed' then
        if kind is not null then
            raise exception using
                errcode = 'feature_not_supported',
                message = 'op.distribute_audit: audit.record_version is a Citus ' || kind
                    || ' table already',
                hint = 'Make it a plain table again (select undistribute_table('
                    || '''audit.record_version'')), then run op.distribute_audit().';
        end if;
        select pg_catalog.array_agg(a.attname::text order by k.ord)
        into key_columns
        from pg_catalog.pg_constraint c
        cross join lateral pg_catalog.unnest(c.conkey) with ordinality as k (attnum, ord)
        join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
        where c.conrelid = 'audit.record_version'::pg_catalog.regclass and c.contype = 'p';
        if key_columns is null or not 'table_oid' = any (key_columns) then
            alter table audit.record_version drop constraint if exists record_version_pkey;
            execute 'alter table audit.record_version add constraint record_version_pkey'
                || ' primary key (table_oid'
                || coalesce((
                    select pg_catalog.string_agg(', ' || pg_catalog.quote_ident(c), '' order by o)
                    from pg_catalog.unnest(key_columns) with ordinality as k (c, o)
                ), ', id')
                || ')';
        end if;
        -- One connection per node for the rest of the transaction: the tables tracked
        -- already are tracked again below, which drops their key-change functions, and
        -- Citus refuses to drop a (distributed) function after a parallel operation.
        perform pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
        perform create_distributed_table('audit.record_version', 'table_oid');
        perform truncate_local_data_after_distributing_table('audit.record_version');
    end if;
    -- Each tracked table (known by its audit_truncate trigger, which Citus keeps on the
    -- table itself, never on its shards) again: now with the Citus write path.
    for tracked in
        select t.tgrelid::regclass from pg_catalog.pg_trigger t
        where t.tgname = 'audit_truncate'
            and t.tgfoid = 'audit.record_truncate()'::pg_catalog.regprocedure
        order by t.tgrelid
    loop
        perform audit.enable_tracking(tracked);
    end loop;
end
$$
