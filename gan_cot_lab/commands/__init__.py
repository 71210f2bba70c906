"""The lab's commands (the comparison, the baselines, the bench, the results page ...), each a module with
``main(argv=None) -> int``, called by the files of the same name under ``scripts/`` and by ``gan-cot-compare-runs``,
``gan-cot-baseline`` and ``gan-cot-bench``."""
