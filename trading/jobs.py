"""The trading domain's periodic jobs, run by the app's lifespan on every instance."""

from __future__ import annotations

from typing import Any

from trading import service, submission, uploads


async def expire_abandoned_uploads(app: Any, state: Any) -> None:
    deps = service.Deps(state["pool"], state["settings"], state["platform_key"], uploads.registry_of(app))
    await submission.expire_abandoned_uploads(deps)


JOBS = [expire_abandoned_uploads]
