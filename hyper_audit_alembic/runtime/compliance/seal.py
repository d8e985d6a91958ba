"""Sealing the trail: :func:`seal`, over ``audit.seal()``.

A seal is one link of a hash chain: it covers every committed audit row not sealed yet
(rows of transactions still running are left for the next seal) and holds the hash of
the link before it, so an edit, a deletion or an insertion of a sealed row, or an edit of
a link, breaks the chain (:func:`~hyper_audit_alembic.verify`). With a key, the link also
stores ``HMAC-SHA256(key, chain_hash)``, computed here: the database never sees the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from .functions import Bind, as_bytes, require_function
from .keys import check_key, seal_mac


@dataclass(frozen=True)
class SealResult:
    """The link a seal wrote to ``audit.seal_log``."""

    link_id: int
    #: How many audit rows it sealed, and in how many segments.
    rows_sealed: int
    segments: int
    #: The link's chain hash, hex: keep it elsewhere (a ticket, a log), so a chain
    #: rebuilt from scratch later cannot pass for this one.
    chain_hash: str
    #: Whether the link stores the HMAC of its chain hash under the caller's key.
    keyed: bool


_SEAL = sa.text("select s.link_id, s.rows_sealed, s.segments, s.chain_hash from audit.seal() as s")
_SET_MAC = sa.text("select audit.set_seal_mac(:link_id, :mac)").bindparams(
    sa.bindparam("link_id", type_=sa.BigInteger), sa.bindparam("mac", type_=sa.LargeBinary)
)


def seal(connection_or_session: Bind, *, key: bytes | None = None) -> SealResult | None:
    """Seal every committed audit row not sealed yet; None when there is none.

    ``connection_or_session``: a SQLAlchemy ``Connection`` or ``Session`` whose role may
    execute ``audit.seal()`` (granted to nobody by default: grant it to a sealer role).
    ``key`` (bytes, 16 or more; e.g. the bytes of a key file): store the HMAC of the new
    link's chain hash, so :func:`~hyper_audit_alembic.verify` with the same key proves
    nobody rebuilt the chain. Runs in the caller's transaction: the caller commits.

    With asyncio: ``await async_session.run_sync(seal, key=key)``.
    """
    if key is not None:
        key = check_key(key, "seal")
    require_function(connection_or_session, "audit.seal()", "seal")
    row = connection_or_session.execute(_SEAL).one_or_none()
    if row is None:
        return None
    link_id, rows_sealed, segments, chain_hash = row
    chain = as_bytes(chain_hash)
    if key is not None:
        require_function(connection_or_session, "audit.set_seal_mac(bigint, bytea)", "seal")
        connection_or_session.execute(
            _SET_MAC, {"link_id": int(link_id), "mac": seal_mac(key, chain)}
        )
    return SealResult(int(link_id), int(rows_sealed), int(segments), chain.hex(), key is not None)
