-- The partitioned layout, after partitioned.sql and partitioned_settings.sql.
--
-- A plain audit.record_version (a new install, or one with history) becomes the
-- partitioned table. Every row is kept with its id; indexes and grants carry over; the
-- primary key becomes (id, ts), as a partitioned table's key must hold the partition key.
do $$
declare
    kind constant "char" := (
        select c.relkind from pg_class c where c.oid = to_regclass('audit.record_version')
    );
    index_names text[];
    index_definitions text[];
    key_names text[];
    grants text[];
    id_sequence text;
    first_ts timestamptz;
    last_ts timestamptz;
    statement text;
begin
    if kind = 'p' then
        return;
    end if;
    select
        array_agg(quote_ident(c.relname::text) order by c.relname),
        array_agg(pg_get_indexdef(i.indexrelid) order by c.relname)
    into index_names, index_definitions
    from pg_index i
    join pg_class c on c.oid = i.indexrelid
    where i.indrelid = 'audit.record_version'::regclass
        and not exists (select from pg_constraint k where k.conindid = i.indexrelid);
    key_names := array(
        select quote_ident(k.conname::text) from pg_constraint k
        where k.conrelid = 'audit.record_version'::regclass and k.contype in ('p', 'u', 'x')
    );
    grants := array(
        select 'grant ' || a.privilege_type || ' on audit.record_version to '
            || case when a.grantee = 0 then 'public' else quote_ident(r.rolname::text) end
            || case when a.is_grantable then ' with grant option' else '' end
        from pg_class c
        cross join lateral aclexplode(c.relacl) a
        left join pg_roles r on r.oid = a.grantee
        where c.oid = 'audit.record_version'::regclass and a.grantee <> c.relowner
    );
    id_sequence := pg_get_serial_sequence('audit.record_version', 'id');

    -- Free the index and key names for the new table; the old one keeps the rows until
    -- they are copied.
    foreach statement in array coalesce(index_names, '{}') loop
        execute 'drop index audit.' || statement;
    end loop;
    foreach statement in array key_names loop
        execute 'alter table audit.record_version drop constraint ' || statement;
    end loop;
    alter table audit.record_version rename to record_version_unpartitioned;
    if id_sequence is not null then
        execute 'alter sequence ' || id_sequence || ' owned by none';
    end if;

    create table audit.record_version (
        like audit.record_version_unpartitioned including defaults including constraints,
        constraint record_version_pkey primary key (id, ts)
    ) partition by range (ts);
    create table audit.record_version_default partition of audit.record_version default;
    foreach statement in array coalesce(index_definitions, '{}') loop
        execute statement;
    end loop;
    revoke all on audit.record_version from public;
    foreach statement in array grants loop
        execute statement;
    end loop;
    if id_sequence is not null then
        execute 'alter sequence ' || id_sequence || ' owned by audit.record_version.id';
    end if;

    select min(ts), max(ts) into first_ts, last_ts from audit.record_version_unpartitioned;
    if first_ts is not null then
        perform audit.ensure_partitions(first_ts, last_ts + interval '1 microsecond');
    end if;
    insert into audit.record_version select * from audit.record_version_unpartitioned;
    drop table audit.record_version_unpartitioned;
end
$$;

select * from audit.maintain_partitions();
