"""The driver's rounds: run a round's plan, judge the named claims, add units while one is undecided.

Without a `replicate` section a sweep is one round. With one, the round to start from is derived from
the committed rows (spec/replicate.round_reached), never from a record, so a driver stopped between or
inside rounds and started again continues the same loop and trains nothing twice. `run_rounds` is
pure logic over three callables (run a round, judge it, report the decision); `run` passes the real
ones (the schedule, the claims of `report`, the console and the store).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from orchestrator.spec import Plan, Sweep
from orchestrator.spec.replicate import Round, round_reached, rounds
from orchestrator.spec.schema import SweepSpec

if TYPE_CHECKING:  # the analysis imports pandas and matplotlib: only where a round is judged
    from orchestrator.analysis.claims import Claim
    from orchestrator.analysis.stopping import Decision
    from orchestrator.execution.schedule import RunSummary


@dataclass
class RoundsOutcome:
    """What the rounds did: each round run (with its schedule summary), and the last decision (None
    without a replicate section, or when a round did not finish)."""

    ran: list[tuple[Round, RunSummary]] = field(default_factory=list)
    decision: Optional[Decision] = None

    @property
    def last(self) -> Round:
        return self.ran[-1][0]


def finished(summary: RunSummary) -> bool:
    """A round is judged only when every trial of it committed (nothing failed, blocked or stopped)."""
    return not (summary.failed or summary.blocked or summary.stopped)


def run_rounds(spec: SweepSpec, committed: set[str], run_round: Callable[[Round], RunSummary],
               judge: Callable[[Round], Sequence[Claim]],
               report: Callable[[Round, Decision], None]) -> RoundsOutcome:
    """Run from the round the committed keys reach until the named claims are decided or the budget
    ends; a round that does not finish ends the loop (its summary says why)."""
    from orchestrator.analysis.stopping import decide  # noqa: PLC0415 (pandas only where a round is judged)

    outcome = RoundsOutcome()
    all_rounds = list(rounds(spec))
    current = round_reached(spec, committed)
    while True:
        summary = run_round(current)
        outcome.ran.append((current, summary))
        if spec.replicate is None or not finished(summary):
            return outcome
        following = all_rounds[current.number] if current.number < len(all_rounds) else None
        outcome.decision = decide(judge(current), spec.replicate.claims, current.number, current.units,
                                  following.added if following else None, following.units if following else None)
        report(current, outcome.decision)
        if not outcome.decision.go_on or following is None:
            return outcome
        current = following


def judge_round(sweep: Sweep, plan: Plan) -> list[Claim]:
    """The eight claims on the round's committed rows, exactly as `report` judges them."""
    from orchestrator.analysis.claims import check_study  # noqa: PLC0415 (pandas, scipy only where judged)
    from orchestrator.cli.report import sweep_frames  # noqa: PLC0415 (Arrow only where rows are read)

    _, results, curves = sweep_frames(sweep, plan)
    _, claims = check_study(results, curves=curves.to_pandas() if curves is not None else None,
                            dataset=sweep.spec.dataset)
    return claims


def shown_round(spec: SweepSpec, committed: set[str], record: Optional[dict]) -> Round:
    """The round `status` shows: the one the committed rows reach, or the next when the driver's last
    judgement (the rounds record, a view) went on to it before any of its trials committed."""
    reached = round_reached(spec, committed)
    if record is None or not record["go_on"] or record["round"] != reached.number:
        return reached
    later = [r for r in rounds(spec) if r.number == reached.number + 1]
    return later[0] if later else reached


def rounds_lines(spec: SweepSpec, shown: Round, record: Optional[dict]) -> list[str]:
    """What `status` says of a replicating sweep: the round, the units, each named claim's latest
    verdict and CI, and why the driver goes on or stopped."""
    if spec.replicate is None:
        return []
    from orchestrator.spec.replicate import worst_case  # noqa: PLC0415 (only for replicating sweeps)
    last = worst_case(spec)
    claims = ", ".join(map(str, spec.replicate.claims))
    lines = [f"replicate until claim(s) {claims} are decided: round {shown.number} of at most {last.number}, "
             f"{shown.units} of at most {spec.replicate.max_units} units"
             + (f" (this round added {shown.added})" if shown.added else "")]
    if record is None:
        return [*lines, "no round judged yet (the driver judges a round once all its trials are committed)"]
    lines += [f"claim {c['id']}: {c['verdict']}, {c['deciding']}" for c in record["claims"]]
    lines.append(f"last judgement: {record['why']}")
    return lines
