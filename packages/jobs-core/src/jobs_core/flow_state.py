"""The arithmetic of flow-control state, shared by drivers.

A driver holds the state (a rate limit's recent grants) in its backend and
updates it atomically; what the state means is computed here, once, so
that every driver judges a limit the same way.

A rate limit of ``count`` starts per ``per`` seconds is a *sliding window*:
the grants of the last ``per`` seconds are kept as ``(time, n)`` pairs (one
pair per call that was granted ``n`` starts), and a call is granted what
the window has room for. Unlike a token bucket, which lets a full bucket's
burst follow a period at the full rate (up to twice ``count`` in one
window), a window never lets more than ``count`` start in any interval of
``per`` seconds; and unlike a log of single starts, its size grows with the
number of calls, not of jobs (workers take starts in batches).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

#: Header holding a job's tenant (``Job.tenant``), read by drivers with ``TENANT_FAIRNESS``.
TENANT_HEADER = "jobs-tenant"

#: Shortest wait, in seconds, returned for a full window (a retry sooner than this is wasted).
MIN_WAIT = 0.001


class TokenGrant(NamedTuple):
    """What :meth:`~jobs_core.driver.Driver.take_tokens` returns."""

    #: Starts granted, 0 to the number wanted.
    granted: int
    #: Seconds from ``at`` until the window has room again (0.0 when all were granted).
    wait: float
    #: The caller's ``time.time()`` the grants are stamped with (read while the window was held).
    at: float


def take_from_window(
    grants: deque[tuple[float, int]], count: int, per: float, want: int, now: float
) -> TokenGrant:
    """Grant up to ``want`` starts from the window ``grants`` (changed in place).

    Returns a :class:`TokenGrant`: ``wait`` is 0.0 when every start wanted
    was granted, else the seconds until the oldest grant leaves the window.
    Grants stamped later than ``now`` (another caller's clock ahead of this
    one) count as in the window.
    """
    horizon = now - per
    while grants and grants[0][0] <= horizon:
        grants.popleft()
    used = sum(n for _, n in grants)
    granted = max(0, min(want, count - used))
    if granted:
        grants.append((now, granted))
    if granted == want:
        return TokenGrant(granted, 0.0, now)
    oldest = grants[0][0] if grants else now
    return TokenGrant(granted, max(MIN_WAIT, oldest + per - now), now)


def encode_window(grants: Iterable[tuple[float, int]]) -> str:
    """The window as JSON text, for a driver that stores it in one column."""
    return json.dumps([[t, n] for t, n in grants], separators=(",", ":"))


def decode_window(text: str | None) -> deque[tuple[float, int]]:
    """A window stored by :func:`encode_window` (empty for ``None`` or unreadable text)."""
    if not text:
        return deque()
    try:
        pairs = json.loads(text)
        return deque((float(t), int(n)) for t, n in pairs)
    except (ValueError, TypeError):
        return deque()
