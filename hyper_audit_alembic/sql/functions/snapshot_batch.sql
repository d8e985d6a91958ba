-- The baseline of a tracked table: one SNAPSHOT audit row per row it holds (record = the
-- row as the triggers render it, without excluded columns; record_id = the id the
-- triggers compute), after which audit.trail_complete_since says the trail rebuilds it.
--
-- One call does one batch, in the caller's transaction: about batch_size rows (whole
-- pages: the batches are ranges of the table's pages, read by TID range scans, so no
-- comparison of the table's keys runs, whose operators a type owner may have written), or
-- everything left when batch_size is null (what a migration runs). It returns the rows it
-- wrote and whether the snapshot is complete. Its progress (audit.snapshot_progress) is
-- written in the same transaction as its rows, so a batch that fails or is rolled back
-- leaves nothing, and the next call goes on from the last committed batch
-- (call audit.snapshot(...) commits after each).
--
-- Never a row twice, whatever writers (or other snapshots) do meanwhile: each batch checks
-- the table before and again after it takes a SHARE ROW EXCLUSIVE lock on the table (it
-- waits for writers in flight and holds new ones, and other snapshots of the table, until
-- the batch's transaction ends) and reads under READ
-- COMMITTED, so it sees every committed change; a row is skipped when the trail has a row
-- for its record with an id above the last audit id before the snapshot began (a change a
-- writer made since, which records the row as it is, or this snapshot's own row for it).
-- A row an UPDATE moves to a page already read is recorded by that UPDATE. A rewrite of the
-- table between batches (VACUUM FULL, CLUSTER, TRUNCATE) starts the pages again. When every
-- page is read, the trail is complete from this transaction's start (now()) on; a call
-- on a complete table writes nothing.
--
-- Who may call it: EXECUTE is revoked from public. The role acting (its SET ROLE role, else
-- the session's) must own the table or be the audit owner (the role that installed the
-- audit trail, or a member): a role the audit owner grants EXECUTE and USAGE on schema
-- audit can snapshot its own tables, and no other. It runs as the audit owner (it writes
-- audit.record_version), under the triggers' output settings, with row_security = off (a
-- table whose rows a policy would hide is refused, never snapshotted in part).
create or replace function audit.snapshot_batch(
    target regclass, batch_size integer, out written bigint, out complete boolean
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
set extra_float_digits = 1
set bytea_output = 'hex'
set DateStyle = 'ISO, MDY'
set IntervalStyle = 'postgres'
set TimeZone = 'UTC'
set lc_monetary = 'C'
set row_security = off
set jit = off
as $$
declare
    acting text := coalesce(nullif(current_setting('role'), 'none'), session_user::text);
    owner_oid oid;
    relation_kind "char";
    schema_name name;
    relation_name name;
    node oid;
    args text[];
    sep integer;
    keys text[];
    excluded text[];
    progress audit.snapshot_progress;
    density double precision;
    upto bigint;
begin
    written := 0;
    complete := false;
    if target is null then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = 'audit.snapshot: the table must not be null';
    end if;
    if batch_size is not null and batch_size < 1 then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.snapshot: batch_size must be 1 or more (or null: the whole table), not '
                || batch_size;
    end if;
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception using
            errcode = 'invalid_transaction_state',
            message = 'audit.snapshot: run it under READ COMMITTED, not '
                || upper(current_setting('transaction_isolation')),
            hint = 'A snapshot taken in an older transaction snapshot could miss changes '
                || 'committed while it waited for its lock on ' || target::text || '.';
    end if;
    -- The label SNAPSHOT, added by an upgrade in this same transaction, cannot be used
    -- before that transaction commits.
    begin
        perform 'SNAPSHOT'::audit.operation;
    exception when unsafe_new_enum_value_usage then
        raise exception using
            errcode = 'HA002',
            message = 'audit.snapshot: the audit schema was upgraded to version 4 in this '
                || 'transaction, and PostgreSQL cannot write the new label SNAPSHOT before '
                || 'that commits',
            hint = 'Commit the upgrade first: op.upgrade_audit() in a migration of its own, '
                || 'run by its own alembic upgrade (or with transaction_per_migration=True), '
                || 'then snapshot ' || target::text || '.';
    end;
    -- Checked before the lock (a role that may not snapshot the table must not lock it) and
    -- again once it is held: while this call waited, the table may have changed owner, lost
    -- or disabled an audit trigger, or been snapshotted by another call (never twice).
    for pass in 1..2 loop
        select c.relowner, c.relkind, n.nspname, c.relname, c.relfilenode
        into owner_oid, relation_kind, schema_name, relation_name, node
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.oid = target;
        if not (pg_has_role(acting::name, owner_oid, 'USAGE')
                or pg_has_role(acting::name, current_user, 'USAGE')) then
            raise exception using
                errcode = 'insufficient_privilege',
                message = 'audit.snapshot: role ' || quote_ident(acting) || ' does not own table '
                    || target::text,
                hint = 'Take the snapshot as the owner of ' || target::text
                    || ' or as the role that installed the audit trail.';
        end if;
        args := audit.trigger_argument_list((
            select t.tgargs from pg_trigger t
            where t.tgrelid = target and t.tgfoid = 'audit.record_row_change()'::regprocedure
            order by t.tgname
            limit 1
        ));
        if relation_kind is distinct from 'r' or cardinality(args) = 0
            or not audit.records_every_change(target)
        then
            raise exception using
                errcode = 'object_not_in_prerequisite_state',
                message = 'audit.snapshot: table ' || target::text || ' is not tracked'
                    || case when cardinality(args) > 0
                        then ' (an audit trigger is disabled, replica-only or missing)'
                        else '' end,
                hint = 'Track it first (op.enable_tracking() in a migration, or '
                    || 'audit.enable_tracking(' || quote_literal(target::text)
                    || ')): the snapshot records its rows, the triggers every change after.';
        end if;
        if exists (select from audit.trail_complete_since m where m.table_oid = target) then
            complete := true;
            return;
        end if;
        exit when pass = 2;
        execute 'lock table only ' || target::text || ' in share row exclusive mode';
    end loop;
    sep := array_position(args, '');
    keys := args[1:coalesce(sep - 1, cardinality(args))];
    excluded := array(
        select substr(a.arg, 9) from unnest(args[coalesce(sep, cardinality(args)) + 1:]) as a (arg)
        where left(a.arg, 8) = 'exclude='
    );

    -- A rewrite (while this call waited for the lock, too) gives the table another file.
    node := (select c.relfilenode from pg_class c where c.oid = target);

    select * into progress from audit.snapshot_progress p where p.table_oid = target;
    if not found then
        progress := row(
            target, audit.last_audit_id(), now(), node, 0,
            pg_relation_size(target) / current_setting('block_size')::bigint, 0
        );
        insert into audit.snapshot_progress values (progress.*);
    elsif progress.file_node <> node then
        progress.file_node := node;
        progress.next_page := 0;
        progress.end_page := pg_relation_size(target) / current_setting('block_size')::bigint;
    end if;

    if batch_size is null then
        upto := progress.end_page;
    else
        density := (
            select case when c.relpages > 0 and c.reltuples > 0
                then c.reltuples / c.relpages else 50 end
            from pg_class c where c.oid = target
        );
        upto := least(
            progress.end_page,
            progress.next_page + greatest(1, ceil(batch_size / density))::bigint
        );
    end if;

    if upto > progress.next_page then
        execute '
            insert into audit.record_version (
                record_id, op, table_oid, table_schema, table_name, record
            )
            select s.id, ''SNAPSHOT'', $1, $2, $3, s.rec
            from (
                select audit.to_record_id($1, $4, r.rec) as id, r.rec
                from (
                    select pg_catalog.to_jsonb(t) operator(pg_catalog.-) $5 as rec
                    from only ' || target::text || ' as t
                    where t.ctid >= $6 and t.ctid < $7
                    offset 0
                ) as r
                offset 0
            ) as s
            where not exists (
                select from audit.record_version as v
                where v.table_oid = $1 and v.record_id = s.id and v.id > $8
                    and v.op::text <> ''REDACT''
            )'
        using target::oid, schema_name, relation_name, keys, excluded,
            ('(' || progress.next_page || ',0)')::tid, ('(' || upto || ',0)')::tid,
            progress.start_id;
        get diagnostics written = row_count;
    end if;

    if upto >= progress.end_page then
        insert into audit.trail_complete_since (table_oid, since, after_id, how)
        values (target, now(), progress.start_id, 'snapshot');
        delete from audit.snapshot_progress p where p.table_oid = target;
        complete := true;
    else
        update audit.snapshot_progress p
        set file_node = progress.file_node, next_page = upto, end_page = progress.end_page,
            written = p.written + snapshot_batch.written
        where p.table_oid = target;
    end if;
end
$$;

revoke all on function audit.snapshot_batch(regclass, integer) from public;
