-- Completes the take-over that adopt_prepare.sql began, after the steps and the functions:
-- every table that a trigger of the reference design tracks (audit_i_u_d / audit_t, or any
-- trigger that runs audit.insert_update_delete_trigger() or audit.truncate_trigger()) loses
-- those triggers and is tracked by ours (audit.enable_tracking), in this same transaction:
-- the table stays locked from the first trigger change to the commit, so each change is
-- recorded by exactly one of the two designs. Then the reference's trigger functions go; a
-- trigger still using them makes that fail rather than leave a table untracked.
--
-- Finds nothing to do without such an install. The text holds no '%' and no ':name'.

do $$
declare
    reference_functions oid[] := array[
        pg_catalog.to_regprocedure('audit.insert_update_delete_trigger()'),
        pg_catalog.to_regprocedure('audit.truncate_trigger()')
    ];
    tracked regclass;
    trigger_name name;
    moved text[] := array[]::text[];
begin
    if reference_functions[1] is null and reference_functions[2] is null then
        return;
    end if;
    for tracked in
        select c.oid::regclass
        from pg_catalog.pg_class c
        where exists (
            select from pg_catalog.pg_trigger t
            where t.tgrelid = c.oid and t.tgfoid = any (reference_functions)
        )
        order by c.oid::regclass::text
    loop
        for trigger_name in
            select t.tgname from pg_catalog.pg_trigger t
            where t.tgrelid = tracked and t.tgfoid = any (reference_functions)
            order by t.tgname
        loop
            execute 'drop trigger ' || pg_catalog.quote_ident(trigger_name) || ' on '
                || tracked::text;
        end loop;
        perform audit.enable_tracking(tracked);
        moved := moved || tracked::text;
    end loop;
    drop function if exists audit.insert_update_delete_trigger();
    drop function if exists audit.truncate_trigger();
    raise notice using
        message = 'hyper_audit: took over the existing audit install; '
            || case
                when pg_catalog.cardinality(moved) = 0 then 'it tracked no table'
                else 'tracked by hyper_audit triggers now: '
                    || pg_catalog.array_to_string(moved, ', ')
            end;
end
$$
