-- Taking over an existing install of the reference design (supa_audit 0.3.x, hyper_audit:
-- schema audit, audit.record_version, trigger functions audit.insert_update_delete_trigger()
-- and audit.truncate_trigger(), triggers audit_i_u_d / audit_t on the tracked tables),
-- plain or as the extension supa_audit, with or without the TimescaleDB conversion.
--
-- Runs first in every install (sql.install_statements(): op.install_audit() and
-- op.adopt_audit()), and finds nothing to do unless such an install is there. Then it makes
-- the existing objects ours before the install's steps run: out of the extension, and the
-- two functions whose parameter the reference names differently dropped (CREATE OR REPLACE
-- cannot rename a parameter). steps/1.sql gives the table's check constraints our names.
-- The reference's triggers keep running on the same audit.primary_key_columns /
-- audit.to_record_id names; adopt_finish.sql moves the tracked tables to our triggers after
-- the install, and only then
-- drops the reference's trigger functions. One transaction (the migration's): nothing is
-- missed or recorded twice.
--
-- The text holds no '%' and no ':name'.

-- The reference's audit table must have the design's columns, and its tables must be ones
-- our triggers can track; refuse before anything changes otherwise.
do $$
declare
    problem text;
begin
    if pg_catalog.to_regprocedure('audit.insert_update_delete_trigger()') is null
        and pg_catalog.to_regprocedure('audit.truncate_trigger()') is null
    then
        return;
    end if;
    if pg_catalog.to_regclass('audit.record_version') is not null then
        select pg_catalog.string_agg(
            case
                when a.attname is null then 'column ' || w.col || ' is missing'
                else 'column ' || w.col || ' is '
                    || pg_catalog.format_type(a.atttypid, a.atttypmod) || ', not ' || w.typ
            end,
            '; ' order by w.pos
        )
        into problem
        from (
            values
                (1, 'id', 'bigint'),
                (2, 'record_id', 'uuid'),
                (3, 'old_record_id', 'uuid'),
                (4, 'op', 'audit.operation'),
                (5, 'ts', 'timestamp with time zone'),
                (6, 'table_oid', 'oid'),
                (7, 'table_schema', 'name'),
                (8, 'table_name', 'name'),
                (9, 'record', 'jsonb'),
                (10, 'old_record', 'jsonb')
        ) as w (pos, col, typ)
        left join pg_catalog.pg_attribute a
            on a.attrelid = pg_catalog.to_regclass('audit.record_version')
            and a.attname = w.col and a.attnum > 0 and not a.attisdropped
        where a.attname is null or pg_catalog.format_type(a.atttypid, a.atttypmod) <> w.typ;
        if problem is not null then
            raise exception using
                errcode = 'object_not_in_prerequisite_state',
                message = 'hyper_audit: cannot take over the existing audit install: '
                    || 'audit.record_version is not the supa_audit / hyper_audit table ('
                    || problem || ')',
                hint = 'The history table must have the columns of the supa_audit 0.3 design. '
                    || 'Move the existing audit schema out of the way (alter schema audit '
                    || 'rename to ...) and install again.';
        end if;
    end if;
    select pg_catalog.string_agg(distinct t.tgrelid::regclass::text, ', ')
    into problem
    from pg_catalog.pg_trigger t
    join pg_catalog.pg_class c on c.oid = t.tgrelid
    where t.tgfoid in (
            pg_catalog.to_regprocedure('audit.insert_update_delete_trigger()'),
            pg_catalog.to_regprocedure('audit.truncate_trigger()')
        )
        and c.relkind = 'p';
    if problem is not null then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'hyper_audit: cannot take over the existing audit install: it tracks '
                || 'the partitioned table(s) ' || problem
                || ', and the hyper_audit triggers track ordinary tables',
            hint = 'Stop tracking the partitioned table (select audit.disable_tracking(...)) '
                || 'and track each of its partitions instead, then run the migration again.';
    end if;
end
$$;

-- Out of the extension (create extension supa_audit): detach every object of the audit
-- schema (and the schema) from the extension that owns the audit trail, so that they stay
-- when the extension goes; the extension is dropped once nothing else is in it.
do $$
declare
    owner record;
    member record;
begin
    for owner in
        select distinct e.oid, e.extname
        from pg_catalog.pg_depend d
        join pg_catalog.pg_extension e on e.oid = d.refobjid
        where d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
            and d.deptype = 'e'
            and (
                (d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                    and d.objid = pg_catalog.to_regnamespace('audit'))
                or (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    and d.objid = pg_catalog.to_regclass('audit.record_version'))
                or (d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                    and d.objid in (
                        pg_catalog.to_regprocedure('audit.enable_tracking(regclass)'),
                        pg_catalog.to_regprocedure('audit.insert_update_delete_trigger()')
                    ))
            )
    loop
        for member in
            select o.type, o.identity
            from pg_catalog.pg_depend d
            cross join lateral pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o
            where d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                and d.refobjid = owner.oid
                and d.deptype = 'e'
                and (o.schema = 'audit' or (o.type = 'schema' and o.identity = 'audit'))
            order by o.type = 'schema', o.type, o.identity
        loop
            execute 'alter extension ' || pg_catalog.quote_ident(owner.extname)
                || ' drop ' || member.type || ' ' || member.identity;
        end loop;
        if exists (
            select from pg_catalog.pg_depend d
            where d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                and d.refobjid = owner.oid and d.deptype = 'e'
        ) then
            raise notice using
                message = 'hyper_audit: the audit objects of extension ' || owner.extname
                    || ' are now ours; the extension keeps its other objects and stays';
        else
            execute 'drop extension ' || pg_catalog.quote_ident(owner.extname);
            raise notice using
                message = 'hyper_audit: extension ' || owner.extname
                    || ' dropped; its audit schema, history and tracked tables are kept';
        end if;
    end loop;
end
$$;

-- The reference names the first parameter of these entity_oid, ours table_oid.
do $$
begin
    if exists (
        select from pg_catalog.pg_proc p
        where p.oid = pg_catalog.to_regprocedure('audit.primary_key_columns(oid)')
            and p.proargnames[1] is distinct from 'table_oid'
    ) then
        drop function audit.primary_key_columns(oid);
    end if;
    if exists (
        select from pg_catalog.pg_proc p
        where p.oid = pg_catalog.to_regprocedure('audit.to_record_id(oid, text[], jsonb)')
            and p.proargnames[1] is distinct from 'table_oid'
    ) then
        drop function audit.to_record_id(oid, text[], jsonb);
    end if;
end
$$
