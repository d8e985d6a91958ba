do $hyper_audit$
declare
    target constant text := 'account';
    -- With options (exclude, skip_unchanged): the three-argument audit.enable_tracking,
    -- which needs audit schema version 2. Null: the one-argument form (a tracked table
    -- keeps its options).
    exclude constant text[] := array['note', 'secret']::text[];
    skip_unchanged constant boolean := true;
    -- on_replica (true: the four-argument form, audit schema version 3) or null.
    on_replica constant boolean := null;
    -- The comment left on audit_truncate: tracked by a migration (catalog.py reads it).
    tracked_by_migration constant text := 'tracked by a hyper_audit_alembic migration';
begin
    if pg_catalog.to_regprocedure('audit.enable_tracking(regclass)') is null then
        raise exception using
            errcode = 'undefined_function',
            message = 'op.enable_tracking: the audit trail is not installed in this database, '
                || 'so ' || target || ' cannot be tracked',
            hint = 'Run op.install_audit() first, in this migration or an earlier one.';
    end if;
    if pg_catalog.to_regclass(target) is null then
        raise exception using
            errcode = 'undefined_table',
            message = 'op.enable_tracking: table ' || target || ' does not exist',
            hint = 'Create the table before this step (op.create_table() earlier in this '
                || 'migration or in an earlier one), or correct the table name and '
                || 'schema given to op.enable_tracking().';
    end if;
    -- Rows stored in a child of plain (non-partition) inheritance fire only the child's
    -- triggers, also when a statement names the parent: the parent's tracking alone would
    -- miss them. So a parent is tracked only once all its children are.
    if exists (
        select from pg_catalog.pg_inherits i
        where i.inhparent = pg_catalog.to_regclass(target)
            and not exists (
                select from pg_catalog.pg_trigger t
                where t.tgrelid = i.inhrelid
                    and t.tgfoid = pg_catalog.to_regprocedure('audit.record_row_change()')
            )
    ) then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'op.enable_tracking: table ' || pg_catalog.to_regclass(target)::text
                || ' has inheritance children that are not tracked: ' || (
                    select pg_catalog.string_agg(i.inhrelid::regclass::text, ', '
                        order by i.inhrelid::regclass::text)
                    from pg_catalog.pg_inherits i
                    where i.inhparent = pg_catalog.to_regclass(target)
                        and not exists (
                            select from pg_catalog.pg_trigger t
                            where t.tgrelid = i.inhrelid
                                and t.tgfoid
                                    = pg_catalog.to_regprocedure('audit.record_row_change()')
                        )
                ),
            hint = 'Rows stored in a child table fire only the triggers of the child, even '
                || 'through the parent: track each child first (op.enable_tracking() for it '
                || 'before the parent). Each table records its rows under its own name.';
    end if;

    if exclude is null then
        perform audit.enable_tracking(target::regclass);
    else
        if pg_catalog.to_regprocedure(
            'audit.enable_tracking(regclass, text[], boolean)'
        ) is null then
            raise exception using
                errcode = 'undefined_function',
                message = 'op.enable_tracking: tracking options (exclude, skip_unchanged) need '
                    || 'audit schema version 2, so ' || target || ' cannot be tracked with them',
                hint = 'Run op.upgrade_audit(from_version=1, to_version=2) first.';
        end if;
        if on_replica is null then
            perform audit.enable_tracking(target::regclass, exclude, skip_unchanged);
        else
            if pg_catalog.to_regprocedure(
                'audit.enable_tracking(regclass, text[], boolean, boolean)'
            ) is null then
                raise exception using
                    errcode = 'undefined_function',
                    message = 'op.enable_tracking: on_replica needs audit schema version 3, so '
                        || target || ' cannot be tracked with it',
                    hint = 'Run op.upgrade_audit(from_version=2, to_version=3) first.';
            end if;
            perform audit.enable_tracking(target::regclass, exclude, skip_unchanged, on_replica);
        end if;
    end if;
    -- Marks the table as tracked by a migration: autogenerate then disables tracking when
    -- the flag goes, but only warns about a table tracked by hand.
    execute 'comment on trigger audit_truncate on ' || pg_catalog.to_regclass(target)::text
        || ' is ' || pg_catalog.quote_literal(tracked_by_migration);
end
$hyper_audit$