"""Train both RALM stages from the Postgres logs and make them the serving models."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from webapp.lookalike.training import TrainingError, model_train, web_config
from webapp.news.models import Source


class Command(BaseCommand):
    help = "Train the user tower (stage 1) and the look-alike model (stage 2) on a reader source's logs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--source", default=Source.DEMO, choices=[s.value for s in Source])
        defaults = web_config()
        parser.add_argument("--dim", type=int, default=defaults.dim, help="size of the reader vector E_u")
        parser.add_argument("--stage1-epochs", type=int, default=defaults.stage1_epochs)
        parser.add_argument("--stage2-epochs", type=int, default=defaults.stage2_epochs)
        parser.add_argument("--seed", type=int, default=defaults.seed)

    def handle(self, *args, **o) -> None:
        if o["dim"] < 2 or o["stage1_epochs"] < 1 or o["stage2_epochs"] < 1:
            raise CommandError("--dim must be at least 2 and the epoch counts at least 1")
        quiet = o.get("verbosity", 1) == 0
        totals = {"stage1": (o["stage1_epochs"], "stage 1 (user tower)"),
                  "stage2": (o["stage2_epochs"], "stage 2 (look-alike)")}
        bars: dict[str, tqdm] = {}

        def progress(stage: str, epoch: dict) -> None:
            if stage not in bars:  # opened when the stage starts, so its clock is the stage's
                total, desc = totals[stage]
                # Stage 1 says how many epochs it runs: fewer than asked on a large log.
                bars[stage] = tqdm(total=epoch.get("of", total), desc=desc, unit="epoch", disable=quiet)
            bars[stage].update(1)
            bars[stage].set_postfix(loss=epoch["loss"], val_auc=epoch["val_auc"])

        try:
            report = model_train(source=o["source"], dim=o["dim"], stage1_epochs=o["stage1_epochs"],
                                 stage2_epochs=o["stage2_epochs"], seed=o["seed"], progress=progress,
                                 log=(lambda m: None) if quiet else (lambda m: tqdm.write(m)))
        except TrainingError as exc:
            raise CommandError(str(exc)) from None
        finally:
            for bar in bars.values():
                bar.close()
        if not quiet:
            s = report.seconds
            self.stdout.write(
                f"trained {report.tower_run.version}: E_u for {report.readers:,} readers "
                f"from {report.clicks:,} clicks; "
                f"seconds: load {s['load']}, stage 1 {s['stage1']}, stage 2 {s['stage2']}, "
                f"cold start {s['coldstart']}, CTR {s['ctr']}, store {s['store']}; "
                f"val AUC stage 1 {report.tower_run.metrics['val_auc']}, "
                f"stage 2 {report.lookalike_run.metrics['val_auc']}")
