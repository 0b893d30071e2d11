"""How long a job waits before each retry: :class:`RetryPolicy`."""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jobs_core.errors import MalformedMessage
from jobs_core.fields import check_seconds

Backoff = Literal["fixed", "exponential"]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before each retry.

    ``fixed`` waits ``delay`` seconds every time; ``exponential`` waits
    ``delay * 2 ** (attempt - 1)``, capped at ``max_delay``. With ``jitter``
    the wait is drawn uniformly from its upper half, so that a burst of
    failures does not retry in lockstep.
    """

    backoff: Backoff = "exponential"
    delay: float = 1.0
    max_delay: float = 3600.0
    jitter: bool = True

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based)."""
        base = self.delay
        if self.backoff == "exponential":
            base = self.delay * (2 ** max(0, min(attempt - 1, 62)))
        base = min(base, self.max_delay)
        if self.jitter and base > 0:
            base = random.uniform(base / 2, base)
        return max(0.0, base)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(_policy_dict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Inverse of :meth:`to_dict`; raises :class:`MalformedMessage` on bad data."""
        if data == _DEFAULT_POLICY_DICT:
            return _DEFAULT_POLICY
        try:
            get = data.get
            return _policy_from_values(
                get("backoff", "exponential"),
                get("delay", 1.0),
                get("max_delay", 3600.0),
                get("jitter", True),
            )
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise MalformedMessage(f"invalid retry policy: {exc}") from exc


@functools.lru_cache(maxsize=256)
def _policy_dict(policy: RetryPolicy) -> dict[str, Any]:
    """The JSON form of a policy, computed once per distinct policy (read only)."""
    return {
        "backoff": policy.backoff,
        "delay": policy.delay,
        "max_delay": policy.max_delay,
        "jitter": policy.jitter,
    }


def retry_policy(backoff: Backoff, delay: float, max_delay: float, jitter: bool) -> RetryPolicy:
    """A shared, validated :class:`RetryPolicy` for these values (cached)."""
    return _policy_from_values(backoff, delay, max_delay, jitter)


@functools.lru_cache(maxsize=256)
def _policy_from_values(backoff: object, delay: object, max_delay: object, jitter: object) -> RetryPolicy:
    """A policy from envelope values, validated and built once per distinct tuple."""
    if backoff not in ("fixed", "exponential"):
        raise ValueError(f"unknown backoff {backoff!r}")
    return RetryPolicy(
        backoff=backoff,
        delay=check_seconds("retry delay", delay),
        max_delay=check_seconds("max retry delay", max_delay),
        jitter=bool(jitter),
    )


_DEFAULT_POLICY = RetryPolicy()
_DEFAULT_POLICY_DICT = _DEFAULT_POLICY.to_dict()
