-- The stable record id: UUID v5 of record_id_text. Null for a null record.
create or replace function audit.to_record_id(table_oid oid, pkey_cols text[], rec jsonb)
returns uuid
language sql
stable
parallel safe
as $$
    select case when rec is not null then audit.uuid_v5(
        'fd62bc3d-8d6e-43c2-919c-802ba3762271'::uuid,
        audit.record_id_text(table_oid, pkey_cols, rec)
    ) end
$$;

revoke all on function audit.to_record_id(oid, text[], jsonb) from public;

grant execute on function audit.to_record_id(oid, text[], jsonb) to public;
