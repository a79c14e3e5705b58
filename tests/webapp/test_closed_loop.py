"""The closed loop (webapp.feed.closedloop, webapp.feed.loopcopies): copies of a snapshot of the database in use, each
run by a process of its own, and `ab_report --closed-loop` on top of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from webapp.feed import closedloop, loopcopies
from webapp.news.models import Click, Impression


def test_copies_of_one_plan_replay_exactly_and_leave_the_database_alone(trained, settings):
    logged, clicks = Impression.objects.count(), Click.objects.count()
    snapshot = f"{connection.settings_dict['NAME']}_loop_test"
    plan = closedloop.plan_make(start=timezone.now(), hours=0.05, sessions_per_hour=3000, seed=3)
    again = closedloop.plan_make(start=datetime.fromtimestamp(plan.start, UTC), hours=0.05, sessions_per_hour=3000,
                                 seed=3)
    assert plan.arrivals and again == plan and closedloop.Plan.from_json(plan.to_json()) == plan
    try:
        loopcopies.snapshot_make(snapshot)
        job = {"world": settings.DEMO_WORLD, "plan": plan.to_json(), "model_dir": str(settings.MODEL_DIR)}
        runs = loopcopies.copies_run(template=snapshot, redis_dbs=loopcopies.REDIS_DBS, progress=False,
                                     jobs=[{**job, "arm": "ctr"}, {**job, "arm": "ctr"}, {**job, "arm": "feature"}])
    finally:
        loopcopies.database_drop(snapshot)
    same = [{k: v for k, v in r.items() if k != "seconds"} for r in runs[:2]]
    assert same[0] == same[1]  # the same arm on the same plan: the same pages, clicks and promotions
    assert len(runs[0]["expected"]) == len(plan.arrivals) and runs[0]["served_by"] == {"ctr": len(plan.arrivals)}
    assert runs[2]["arm"] == "feature" and runs[2]["shown"] != runs[0]["shown"]
    assert runs[0]["clicks"] > 0 and set(runs[0]["minutes_to_warm"])  # three stories published in 3 minutes
    assert (Impression.objects.count(), Click.objects.count()) == (logged, clicks)  # the copies wrote, not us


def test_ab_report_runs_the_arms_in_the_closed_loop(trained):
    logged = Impression.objects.count()
    out = StringIO()
    call_command("ab_report", "--closed-loop", "0.05", "--replicates", "2", "--arms", "ctr,feature", "--json",
                 stdout=out, stderr=StringIO())
    loop = json.loads(out.getvalue())["closed_loop"]
    assert loop["replicates"] == 2 and set(loop["arms"]) == {"ctr", "feature"}
    vs = loop["arms"]["feature"]["vs_ctr"]
    assert vs["expected_ctr_rel_se"] is not None and "minutes_to_warm_diff" in vs and "tail_exposure_rel" in vs
    assert Impression.objects.count() == logged
    table = StringIO()
    call_command("ab_report", "--closed-loop", "0.02", "--replicates", "1", "--arms", "ctr", stdout=table,
                 stderr=StringIO())
    assert "closed loop from now" in table.getvalue() and "minutes to warm" in table.getvalue()
    for bad in (("--closed-loop", "-1"), ("--closed-loop", "1", "--replicates", "0"),
                ("--closed-loop", "1", "--arms", "ctr,magic")):
        with pytest.raises(CommandError, match="closed-loop|--arms"):
            call_command("ab_report", *bad)
