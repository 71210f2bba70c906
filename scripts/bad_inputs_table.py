"""Run the bad-input cases (gan_cot/testing/bad_inputs.py) and print what each entry point did, as a markdown table.

    python scripts/bad_inputs_table.py            # the table: case | entry point | exit code | message (first line)
    python scripts/bad_inputs_table.py --json     # the table, then one JSON object as the last line

Every case builds its bad input in a temporary folder (removed afterwards) and runs the real entry point in-process,
as tests/test_bad_inputs.py does. A row whose run missed an expectation (exit 0, no single error line, a traceback,
something left behind) shows the problems in bold; a pending case that would only start a training run is not run.
Exit code 0 when every case that is not pending was handled as it should be, else 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from gan_cot.cli import print_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--only", nargs="*", default=None, help="run only these case ids")
    args = p.parse_args(argv)

    import torch

    from gan_cot.testing.bad_inputs import CASES, Outcome, build_shared, markdown_table, run_case

    torch.set_num_threads(2)
    cases = [c for c in CASES if not args.only or c.id in args.only]
    unknown = sorted(set(args.only or ()) - {c.id for c in CASES})
    if unknown:
        print(f"error: unknown case ids {unknown}; see gan_cot/testing/bad_inputs.py", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="gan-cot-bad-inputs-"))
    items: list = []
    rows = []
    try:
        shared = build_shared(root / "shared")
        for case in cases:
            work = root / "cases" / case.id
            why = case.precheck(work, shared) if case.pending and case.precheck is not None else None
            if why:
                items.append((case, why))
                rows.append({"case": case.id, "area": case.area, "entry": case.entry, "exit_code": None,
                             "message": None, "problems": [], "pending": case.pending, "ran": False})  # fmt: skip
                continue
            outcome: Outcome = run_case(case, work, shared)
            items.append(outcome)
            rows.append({"case": case.id, "area": case.area, "entry": case.entry, "exit_code": outcome.code,
                         "message": outcome.message, "problems": outcome.problems(), "pending": case.pending,
                         "ran": True, "seconds": round(outcome.seconds, 2)})  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(markdown_table(items))
    failed = [r["case"] for r in rows if r["problems"] and not r["pending"]]
    pending = [r["case"] for r in rows if r["pending"]]
    handled = [r["case"] for r in rows if r["ran"] and not r["problems"]]
    print(f"\n{len(handled)} of {len(rows)} cases handled; pending: {', '.join(pending) or 'none'}; "
          f"failed: {', '.join(failed) or 'none'}")  # fmt: skip
    if args.json:
        print_json({"cases": rows, "handled": len(handled), "pending": pending, "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
