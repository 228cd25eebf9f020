"""The trading domain's periodic jobs, run by the app's lifespan on every instance."""

from __future__ import annotations

from typing import Any

from trading import hall_decryption, service, submission, uploads


async def expire_abandoned_uploads(app: Any, state: Any) -> None:
    deps = service.Deps(state["pool"], state["settings"], state["platform_key"], uploads.registry_of(app))
    await submission.expire_abandoned_uploads(deps)


async def open_bids_with_released_shares(app: Any, state: Any) -> None:
    """Custodian openings cut off mid-way (a restart) finish here without waiting for another act."""
    deps = service.Deps(state["pool"], state["settings"], state["platform_key"], uploads.registry_of(app))
    await hall_decryption.open_pending_everywhere(deps)


JOBS = [expire_abandoned_uploads, open_bids_with_released_shares]
