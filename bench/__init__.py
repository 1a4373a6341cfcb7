"""The ndrflow benchmark: realistic shipment journeys through the real HTTP API of the embedded
stack, measured against the bare Temporal engine doing the same Temporal calls in the same run.

    make bench            # full run, at most 10 minutes
    make bench QUICK=1    # at most 2 minutes

Not part of the wheel (pyproject only packages the product). Results: bench/results/latest.json
(fixed keys, see bench/report.py) and bench/results/latest.png.
"""
