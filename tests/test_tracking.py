"""gan_cot.tracking: the local MLflow store."""

import subprocess
import sys


def test_runs_started_together_on_a_new_store_all_get_the_experiment(tmp_path):
    """tracking.setup from several processes at once on a store that does not exist yet: the first creates the
    database and the experiment, the others wait and find them (unlocked, they raced on the tables)."""
    code = f"from gan_cot import tracking; print(tracking.setup('together', {str(tmp_path / 'mlruns')!r}))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outs]
    assert len({out.strip().splitlines()[-1] for out, _ in outs}) == 1  # one experiment id
