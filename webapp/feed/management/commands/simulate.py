"""Run the simulated readers against the system and publish held-back stories over time."""

from __future__ import annotations

import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from fixtures.corpus import READERS_FILE, CorpusError, click_model, load_readers
from recsys.arms import ARMS, UnknownArm
from recsys.simulation import ClickModel, UnknownWorld
from webapp.feed.backfill import history_backfill
from webapp.feed.simulator import HttpTransport, LocalTransport, Simulator, TransportError
from webapp.news.models import Click, Source


class Command(BaseCommand):
    help = ("Simulated readers: request feeds, click by the hidden click model, publish held-back "
            "stories. Live over HTTP by default; --backfill-hours writes a past history in bulk.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="server to read from")
        parser.add_argument("--inprocess", action="store_true",
                            help="call the feed and click services directly instead of over HTTP")
        parser.add_argument("--rate", type=float, default=3.0, help="reader sessions per second (live)")
        parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until Ctrl-C")
        parser.add_argument("--sessions", type=int, default=0, help="stop after this many sessions")
        parser.add_argument("--publish-every", type=float, default=45.0,
                            help="seconds between publishing held-back stories; 0 = never")
        parser.add_argument("--backfill-hours", type=float, default=0.0,
                            help="simulate --sessions sessions spread over the past hours, then stop")
        parser.add_argument("--skip-if-history", action="store_true",
                            help="with --backfill-hours: do nothing if demo clicks already exist")
        parser.add_argument("--feed-size", type=int, default=10)
        parser.add_argument("--readers", default=str(READERS_FILE))
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--world", default=None,
                            help="the demo world whose hidden click model readers click by (recsys.simulation.WORLDS, "
                                 "e.g. labels, audiences, audiences:w_audience=1.2); default: DEMO_WORLD")
        parser.add_argument("--arms", default="",
                            help=f"comma-separated ranker arms to split sessions between (an A/B test read by "
                                 f"ab_report), of {', '.join(ARMS)}; default: the configured one (FEED_ARM)")

    def handle(self, *args, **o) -> None:
        if o["rate"] <= 0 or o["feed_size"] < 1 or o["sessions"] < 0 or o["duration"] < 0:
            raise CommandError("--rate and --feed-size must be positive; --sessions, --duration >= 0")
        if o["backfill_hours"] < 0 or (o["backfill_hours"] and not o["sessions"]):
            raise CommandError("--backfill-hours needs a positive value and --sessions N")
        if o["backfill_hours"] and o["arms"]:
            raise CommandError("--arms applies to live sessions; --backfill-hours pages by the logging policy")
        try:
            readers = load_readers(o["readers"])
            model = click_model(o["world"] or settings.DEMO_WORLD)
        except (CorpusError, UnknownWorld) as exc:
            raise CommandError(str(exc)) from None
        if o["backfill_hours"] > 0:
            self._backfill(readers, model, o)
            return
        transport = LocalTransport() if o["inprocess"] else HttpTransport(o["base_url"])
        try:
            sim = Simulator(readers=readers, click_model=model, transport=transport,
                            feed_size=o["feed_size"], seed=o["seed"], arms=o["arms"])
        except UnknownArm as exc:
            raise CommandError(f"--arms: {exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self._live(sim, o)

    def _backfill(self, readers, model: ClickModel, o: dict) -> None:
        if o["skip_if_history"] and Click.objects.filter(reader__source=Source.DEMO).exists():
            self.stdout.write("demo history exists; backfill skipped")
            return
        try:
            report = history_backfill(readers=readers, click_model=model, hours=o["backfill_hours"],
                                      sessions=o["sessions"], seed=o["seed"] or 0, feed_size=o["feed_size"],
                                      progress=o["verbosity"] > 0)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"backfill: {report} over {o['backfill_hours']:g} h")

    def _live(self, sim: Simulator, o: dict) -> None:
        if isinstance(sim.transport, HttpTransport):
            self._wait_for_server(sim.transport)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly, print the summary
        start = time.monotonic()
        next_publish = start + o["publish_every"] if o["publish_every"] > 0 else float("inf")
        bar = tqdm(desc="simulate", unit="session", total=o["sessions"] or None)
        try:
            while True:
                elapsed = time.monotonic() - start
                if (o["duration"] and elapsed >= o["duration"]) or (
                        o["sessions"] and sim.stats.sessions >= o["sessions"]):
                    break
                if time.monotonic() >= next_publish:
                    title = sim.publish_next()
                    if title:
                        tqdm.write(f"published: {title}")
                    next_publish += o["publish_every"]
                try:
                    sim.session()
                    bar.update(1)
                except TransportError as exc:
                    sim.stats.errors += 1
                    tqdm.write(f"simulate: {exc}; retrying")
                    time.sleep(1.0)
                bar.set_postfix(clicks=sim.stats.clicks, ctr=f"{sim.stats.ctr:.3f}",
                                published=sim.stats.published, errors=sim.stats.errors, refresh=False)
                # Pace sessions to --rate, Poisson-like arrivals.
                time.sleep(float(sim.rng.exponential(1.0 / o["rate"])))
        except KeyboardInterrupt:
            pass
        finally:
            bar.close()
        s = sim.stats
        self.stdout.write(f"simulate: {s.sessions} sessions, {s.impressions} impressions, {s.clicks} "
                          f"clicks (CTR {s.ctr:.3f}), {s.published} published, {s.errors} errors")

    def _wait_for_server(self, transport: HttpTransport, attempts: int = 120) -> None:
        for n in range(attempts):
            try:
                transport.wait_ready()
                return
            except TransportError as exc:
                if n == 0:
                    self.stdout.write(f"waiting for {transport.base_url} ({exc})")
                time.sleep(1.0)
        raise CommandError(f"{transport.base_url} did not answer /healthz in {attempts} s")
