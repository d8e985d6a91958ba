"""Verifying the trail: :func:`verify`, over ``audit.verify()``.

``audit.verify()`` recomputes every link of the seal chain from the audit rows (each
segment's hash from its rows, each link's chain hash from the link before it) and says,
link by link, whether it holds: ``ok``, ``redacted`` or ``expired`` (changed by a
recorded redaction or retention drop), or ``failed`` and why (a row changed, missing or
added, a link edited). With the key of keyed seals, :func:`verify` also checks each keyed
link's stored HMAC against the RECOMPUTED chain hash: a chain rebuilt by someone with
every right in the database (rows edited, hashes recomputed) passes the recomputation,
but not the HMACs, which need the key the database never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from .functions import Bind, as_bytes, require_function
from .keys import check_key, mac_matches

#: The detail of a link whose stored HMAC does not match the key.
MAC_MISMATCH = "seal mac does not match the key: the chain was rewritten or the key is wrong"
NO_MAC = (
    "no seal link carries a mac: the macs were removed, or no seal was made with this key "
    "(seal --key-file)"
)
ANCHOR_MISSING = (
    "the chain hash kept elsewhere is no link's: the chain was cut short or rewritten "
    "(or the hash is of another database)"
)


@dataclass(frozen=True)
class LinkCheck:
    """One row of ``audit.verify()``: a link of the chain, or (``link_id`` None, ``kind``
    ``'unsealed'``) the audit rows in no seal."""

    link_id: int | None
    #: ``'seal'``, ``'redaction'``, ``'expiry'``, ``'unsealed'``, or ``'missing'`` (a link
    #: id absent from the log).
    kind: str
    #: ``'ok'``, ``'redacted'``, ``'expired'`` or ``'failed'`` (with a key, also
    #: ``'failed'`` where the link's HMAC does not match).
    status: str
    rows_verified: int
    #: The chain hash the verification recomputed for the link (hex); None for
    #: ``'unsealed'``.
    chain_hash: str | None
    detail: str | None
    #: With a key: True where the link's HMAC matched, False where it did not, None where
    #: the link holds none. Without a key: None.
    mac_ok: bool | None = None


@dataclass(frozen=True)
class VerifyFailure:
    """The first link that failed, and why."""

    #: None for the audit rows in no seal (``kind`` ``'unsealed'``), for a key that covers
    #: no seal link (``'seal'``) and for an anchor no link has (``'anchor'``).
    link_id: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        if self.link_id is None and self.kind == "unsealed":
            return f"audit rows in no seal: {self.detail}"
        if self.link_id is None:
            return f"the chain: {self.detail}"
        return f"link {self.link_id} ({self.kind}): {self.detail}"


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: ``ok`` unless a link (or the unsealed rows) failed."""

    ok: bool
    #: Links that verified (ok, redacted or expired), and the audit rows their seals
    #: cover (a redaction link's rows are counted with the seal that covers them).
    links_verified: int
    rows_verified: int
    first_failure: VerifyFailure | None
    #: Redaction and expiry links among the links checked.
    redactions: int
    expiries: int
    #: The latest link's recomputed chain hash (hex): compare it with the one kept
    #: elsewhere when it was sealed. None when no link was checked.
    chain_hash: str | None
    #: Committed audit rows not sealed yet (a later seal covers them).
    unsealed_rows: int = 0
    #: Whether a key was given; with one, the links after the last keyed one (their
    #: chain hashes are not bound to the key yet: the next keyed seal covers them).
    keyed: bool = False
    not_keyed: tuple[int, ...] = ()
    links: tuple[LinkCheck, ...] = ()

    def summary(self) -> str:
        """One line: the first failure, or ``N rows in M links verified (R redactions, E
        expiries); latest chain hash …``."""
        if self.first_failure is not None:
            return f"FAILED: {self.first_failure}"
        rows = f"{self.rows_verified} row{'' if self.rows_verified == 1 else 's'}"
        links = f"{self.links_verified} link{'' if self.links_verified == 1 else 's'}"
        redactions = f"{self.redactions} redaction{'' if self.redactions == 1 else 's'}"
        expiries = f"{self.expiries} expir{'y' if self.expiries == 1 else 'ies'}"
        latest = (
            "no seal yet" if self.chain_hash is None else f"latest chain hash {self.chain_hash}"
        )
        return f"{rows} in {links} verified ({redactions}, {expiries}); {latest}"


_VERIFY = sa.text(
    "select v.link_id, v.kind, v.status, v.rows_verified, v.chain_hash, v.detail"
    " from audit.verify(:from_link, :to_link) as v"
).bindparams(
    sa.bindparam("from_link", type_=sa.BigInteger), sa.bindparam("to_link", type_=sa.BigInteger)
)
_MACS = sa.text(
    "select l.link_id, l.mac from audit.seal_log l"
    " where l.link_id = any (cast(:ids as bigint[])) and l.mac is not null"
)


def _anchor(value: object) -> str:
    """A chain hash as 64 lower-case hex digits (``\\x`` and upper case accepted)."""
    text = str(value).strip().lower().removeprefix("\\x")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(
            "verify: anchor must be a chain hash (64 hex digits, as seal printed it), "
            f"got {value!r}"
        )
    return text


def _link_bound(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"verify: {name} must be a link id (int) or None, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"verify: {name} must be a link id (1 or more), got {value}")
    return value


def verify(
    connection_or_session: Bind,
    *,
    from_link: int | None = None,
    to_link: int | None = None,
    key: bytes | None = None,
    anchor: str | None = None,
) -> VerifyReport:
    """Recompute the seal chain (links ``from_link`` to ``to_link``, both included; None:
    from the first, to the last) and report the first failure, or what verified.

    ``key``: the key of keyed seals (bytes): each keyed link's stored HMAC must match the
    HMAC of its recomputed chain hash, or the link fails ("seal mac does not match the
    key: ..."); links after the last keyed one are listed in ``not_keyed``; a key with no
    keyed seal link among those checked fails (the macs may have been removed).
    ``anchor``: a chain hash kept outside the database (hex, as seal printed it): one of
    the links checked must have it, or the check fails — the only defence against a chain
    cut short or rewritten wholesale by a superuser without a key. Needs EXECUTE
    on ``audit.verify`` (and, with a key, SELECT on ``audit.seal_log``). Reads only.

    With asyncio: ``await async_session.run_sync(verify, key=key)``.
    """
    start = _link_bound(from_link, "from_link")
    end = _link_bound(to_link, "to_link")
    if start is not None and end is not None and start > end:
        raise ValueError(f"verify: from_link {start} is after to_link {end}")
    if key is not None:
        key = check_key(key, "verify")
    wanted = None if anchor is None else _anchor(anchor)
    require_function(connection_or_session, "audit.verify(bigint, bigint)", "verify")
    found = connection_or_session.execute(_VERIFY, {"from_link": start, "to_link": end}).all()
    macs: dict[int, bytes] = {}
    link_ids = [int(row[0]) for row in found if row[0] is not None]
    if key is not None and link_ids:
        macs = {
            int(link_id): as_bytes(mac)
            for link_id, mac in connection_or_session.execute(_MACS, {"ids": link_ids})
        }
    last_keyed = max(macs, default=0)
    links: list[LinkCheck] = []
    failure: VerifyFailure | None = None
    for link_id, kind, status, rows, chain_hash, detail in found:
        link = None if link_id is None else int(link_id)
        chain = None if chain_hash is None else as_bytes(chain_hash)
        mac_ok: bool | None = None
        if key is not None and link is not None and link in macs and chain is not None:
            mac_ok = mac_matches(key, chain, macs[link])
            if not mac_ok and status != "failed":
                status, detail = "failed", MAC_MISMATCH
        check = LinkCheck(
            link, "missing" if kind is None else str(kind), str(status), int(rows or 0),
            None if chain is None else chain.hex(), detail, mac_ok,
        )  # fmt: skip
        links.append(check)
        if check.status == "failed" and failure is None:
            failure = VerifyFailure(link, check.kind, detail or "failed")
    chained = [c for c in links if c.link_id is not None]
    if failure is None and key is not None and not macs and any(c.kind == "seal" for c in chained):
        failure = VerifyFailure(None, "seal", NO_MAC)
    if failure is None and wanted is not None and wanted not in {c.chain_hash for c in chained}:
        failure = VerifyFailure(None, "anchor", ANCHOR_MISSING)
    verified = [c for c in chained if c.status != "failed"]
    unsealed = sum(c.rows_verified for c in links if c.link_id is None and c.status != "failed")
    return VerifyReport(
        ok=failure is None,
        links_verified=len(verified),
        rows_verified=sum(c.rows_verified for c in verified if c.kind == "seal"),
        first_failure=failure,
        redactions=sum(1 for c in verified if c.kind == "redaction"),
        expiries=sum(1 for c in verified if c.kind == "expiry"),
        chain_hash=chained[-1].chain_hash if chained else None,
        unsealed_rows=unsealed,
        keyed=key is not None,
        not_keyed=tuple(i for i in link_ids if key is not None and i > last_keyed),
        links=tuple(links),
    )
