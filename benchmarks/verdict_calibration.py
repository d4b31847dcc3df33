"""How often each verdict says "holds" in synthetic studies with no effect (false positives) and
with a known effect (power), at 2 and 3 seeds, and how often it wrongly says "does not hold"
where the effect is real (bsweep.analysis.simulate has the studies).

    .venv/bin/python benchmarks/verdict_calibration.py --studies 300 [--write BENCHMARKS.md]

The design goal (issue 11): "holds" in at most 5 % of null studies at 2 and at 3 seeds, and in at
least 80 % of studies with the effect at 3 seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bsweep.analysis.simulate import EFFECTS, c6_rates, claim_rates  # noqa: E402
from bsweep.analysis.claims import CLAIMS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=300, help="synthetic studies per cell")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--claims", default="", help="comma-separated claim ids (default: every claim)")
    args = parser.parse_args()
    wanted = {c.strip() for c in args.claims.split(",") if c.strip()}
    started = time.time()
    lines = ["| claim | protocol | holds, no effect, 2 seeds | no effect, 3 seeds | effect, 2 seeds | effect, 3 seeds "
             "| does not hold, effect, 2 seeds | effect, 3 seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for claim, function, protocols in ((c.id, c.judge, c.protocols) for c in CLAIMS.values()):
        if wanted and claim not in wanted:
            continue
        if claim not in EFFECTS and claim != "C6":
            # C8 counts bytes from shapes (no seed noise to test) and N5's cost half reads one
            # calibrated step time per point: neither has a false-positive rate to measure
            lines.append(f"| {claim} | {protocols[0]} | deterministic: no seed noise | | | | | |")
            print(lines[-1], flush=True)
            continue
        if claim == "C6":  # one reference trial, its draws the replicates: no seed count
            null, effect = c6_rates(args.studies, False, seed=1), c6_rates(args.studies, True, seed=2)
            cells = [null["holds"], null["holds"], effect["holds"], effect["holds"], effect["does not hold"],
                     effect["does not hold"]]
            line = f"| {claim} | {protocols[0]} (8 draws, any seeds) | " + " | ".join(f"{c:.1%}" for c in cells) + " |"
            lines.append(line)
            print(line, flush=True)
            continue
        for protocol in protocols:
            null2, null3, effect2, effect3 = (
                claim_rates(claim, function, protocol, 2, args.studies, seed=1),
                claim_rates(claim, function, protocol, 3, args.studies, seed=2),
                claim_rates(claim, function, protocol, 2, args.studies, EFFECTS[claim], seed=3),
                claim_rates(claim, function, protocol, 3, args.studies, EFFECTS[claim], seed=4),
            )
            cells = [null2["holds"], null3["holds"], effect2["holds"], effect3["holds"],
                     effect2["does not hold"], effect3["does not hold"]]
            line = f"| {claim} | {protocol} | " + " | ".join(f"{c:.1%}" for c in cells) + " |"
            lines.append(line)
            print(line, flush=True)
    footer = (f"\n{args.studies} synthetic studies per cell (6 batch sizes x 3 lrs x 2 arms: batch, group; N2, N4: "
              "batch vs none; N3: zscore vs minmax; N6: lrn vs none; N7: batch, group x shuffled, sorted; C6: one "
              "trial's cosines at 3 checkpoints, batch sizes 1-4096), "
              f"{time.time() - started:.0f} s.")
    print(footer)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n".join(lines) + "\n" + footer + "\n")


if __name__ == "__main__":
    main()
