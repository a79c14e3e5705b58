"""One closed-loop copy, in a process of its own: `python -m webapp.feed.loopcopy SPEC.json`,
as webapp.feed.loopcopies.copies_run starts it. Django is pointed at the copy's database and
Redis database before it loads, then the loop runs and its result goes where SPEC says."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    os.environ.update(DATABASE_URL=spec["database_url"], REDIS_URL=spec["redis_url"], MODEL_DIR=spec["model_dir"],
                      DEMO_WORLD=spec["world"])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from webapp.feed.closedloop import Plan, loop_run

    result = loop_run(arm=spec["arm"], plan=Plan.from_json(spec["plan"]), world=spec["world"], progress=False)
    Path(spec["out"]).write_text(json.dumps(result.to_json()))


if __name__ == "__main__":
    main(sys.argv[1])
